//! The table the demo prints when it is done: per shop × stream, what it synced.
//!
//! Owns: [`render`]. Must not: count (that is `super::tally`).

use super::screen::thousands;
use super::tally::Tally;

/// One row per shop × stream and a total: records written, pages fetched, runs, time to the
/// end of the backfill.
pub fn render(tally: &Tally) -> String {
    let mut rows = vec![[
        "shop".to_string(),
        "stream".to_string(),
        "records".to_string(),
        "pages".to_string(),
        "runs".to_string(),
        "backfill".to_string(),
    ]];
    let (mut records, mut pages, mut runs) = (0, 0, 0);
    for ((shop, stream), t) in tally.iter() {
        records += t.records();
        pages += t.pages();
        runs += t.runs;
        rows.push([
            shop.clone(),
            stream.as_str().to_string(),
            thousands(t.records()),
            thousands(t.pages()),
            t.runs.to_string(),
            t.backfill
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "–".to_string()),
        ]);
    }
    rows.push([
        "total".to_string(),
        String::new(),
        thousands(records),
        thousands(pages),
        runs.to_string(),
        String::new(),
    ]);
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| match c {
                0 | 1 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
