//! The `apps:` and `shops:` sections of a daemon config that point at the in-process simulator,
//! one entry per simulated app and shop, every secret passed by environment variable as in
//! production (the config names `SIM_APP_SECRET_<i>` and `SIM_TOKEN_<i>`; [`SimShops::env`] gives
//! their values for [`super::DaemonLaunch::envs`]).
//!
//! Only these two sections: timeouts, intervals and the rest stay with each caller, which knows
//! what it measures.

use std::fmt::Write as _;

use crate::sim::SimConfig;

/// The simulator's apps and shops as daemon config.
pub struct SimShops<'a> {
    sim: &'a SimConfig,
    router_url: &'a str,
    app_qps: Option<u32>,
    streams: Option<&'a str>,
}

impl<'a> SimShops<'a> {
    /// Every app and shop of `sim`, each shop's `base_url` the simulator's router.
    pub fn new(sim: &'a SimConfig, router_url: &'a str) -> Self {
        Self {
            sim,
            router_url,
            app_qps: None,
            streams: None,
        }
    }

    /// Every app's `qps` (default: the simulator's own limit for the app).
    pub fn app_qps(mut self, qps: u32) -> Self {
        self.app_qps = Some(qps);
        self
    }

    /// Every shop's `streams:` list, e.g. `"orders, products"` (default: the key is left out).
    pub fn streams(mut self, list: &'a str) -> Self {
        self.streams = Some(list);
        self
    }

    /// `apps:` then `shops:`, each line ending in a newline.
    pub fn yaml(&self) -> String {
        let mut yaml = String::from("apps:\n");
        for (i, app) in self.sim.apps.iter().enumerate() {
            let _ = writeln!(
                yaml,
                "  - {{ name: app{i}, app_key: \"{}\", app_secret: {{ env: SIM_APP_SECRET_{i} }}, qps: {} }}",
                app.app_key,
                self.app_qps.unwrap_or(app.qps)
            );
        }
        yaml.push_str("shops:\n");
        for (i, shop) in self.sim.shops.iter().enumerate() {
            let app = self
                .sim
                .apps
                .iter()
                .position(|a| a.app_key == shop.app_key)
                .unwrap_or(0);
            let streams = self
                .streams
                .map(|list| format!(", streams: [{list}]"))
                .unwrap_or_default();
            let _ = writeln!(
                yaml,
                "  - {{ name: {}, region: us, app: app{app}, access_token: {{ env: SIM_TOKEN_{i} }}, base_url: \"{}\"{streams} }}",
                shop.name, self.router_url
            );
        }
        yaml
    }

    /// The secrets [`SimShops::yaml`] names, as environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let secrets = self.sim.apps.iter().map(|app| app.app_secret.clone());
        let tokens = self.sim.shops.iter().map(|shop| shop.access_token.clone());
        numbered("SIM_APP_SECRET", secrets)
            .chain(numbered("SIM_TOKEN", tokens))
            .collect()
    }
}

/// `(PREFIX_0, first), (PREFIX_1, second), …`
fn numbered(
    prefix: &'static str,
    values: impl Iterator<Item = String>,
) -> impl Iterator<Item = (String, String)> {
    values
        .enumerate()
        .map(move |(i, value)| (format!("{prefix}_{i}"), value))
}
