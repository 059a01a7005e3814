//! The table of figures: one row per measured figure with its target and verdict, notes below.
//! Each row is printed as it is added (progress) and again, sorted, at the end; `--markdown`
//! writes the same rows for docs/PERFORMANCE.md. Measures nothing itself.

use std::fmt::Write as _;

/// One line of the table.
struct Row {
    section: &'static str,
    metric: String,
    value: String,
    target: String,
    met: Option<bool>,
}

/// The rows and notes of one bench run.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    /// Adds (and prints) a row; `met` is None for a figure without a pass/fail target.
    pub fn add(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            section,
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            met,
        };
        println!(
            "  {:<9} {:<58} {:>18}  {}",
            row.section,
            row.metric,
            row.value,
            verdict(&row)
        );
        self.rows.push(row);
    }
    /// Adds (and prints) a note below the table.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }
    /// Sorts the rows by section (ingest, api, single, fresh, health, memory, recovery) and
    /// prints them.
    pub fn print_sorted(&mut self) {
        let order = [
            "ingest", "api", "single", "fresh", "health", "memory", "recovery",
        ];
        self.rows
            .sort_by_key(|r| order.iter().position(|s| *s == r.section).unwrap_or(9));
        println!();
        println!("{:<9} {:<80} {:>22}  verdict", "section", "metric", "value");
        for r in &self.rows {
            println!(
                "{:<9} {:<80} {:>22}  {}",
                r.section,
                r.metric,
                r.value,
                verdict(r)
            );
        }
    }

    /// How many rows missed their target.
    pub fn missed(&self) -> usize {
        self.rows.iter().filter(|r| r.met == Some(false)).count()
    }

    /// The rows and notes as Markdown, for docs/PERFORMANCE.md.
    pub fn markdown(&self) -> String {
        let mut s =
            String::from("| section | metric | value | target | met |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.section,
                r.metric,
                r.value,
                r.target,
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            );
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

fn verdict(r: &Row) -> String {
    match r.met {
        Some(true) => format!("ok   (target {})", r.target),
        Some(false) => format!("MISS (target {})", r.target),
        None if r.target.is_empty() => String::new(),
        None => format!("(target {})", r.target),
    }
}
