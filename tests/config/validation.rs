//! Validation rules of a parsed configuration, including a proxy URL with credentials
//! (rejected without echoing them).
//!
//! Owns the validation cases.

use crate::{err, load};

#[test]
fn validation_rules() {
    let cases: &[(&str, &str, &str)] = &[
        ("database:\n  pool_size: 0\n", "database.pool_size", "at least 1"),
        (
            "supervisor:\n  backoff_min: 1m\n  backoff_max: 10s\n",
            "supervisor.backoff_min",
            "longer than supervisor.backoff_max",
        ),
        (
            "supervisor:\n  ping_timeout: 5s\n  ping_interval: 5s\n",
            "supervisor.ping_timeout",
            "shorter than supervisor.ping_interval",
        ),
        (
            "database:\n  ping_timeout: 20s\n",
            "database.ping_timeout",
            "shorter than database.ping_interval",
        ),
        (
            "database:\n  url: postgres://u:pw@localhost/db\n",
            "database.url",
            "put the password in database.password",
        ),
        ("database:\n  url: \"not a url at all\"\n", "database.url", "PostgreSQL"),
        (
            "temu:\n  proxy:\n    url: ftp://proxy:21\n",
            "temu.proxy.url",
            "expected http, https, socks5 or socks5h",
        ),
        ("sync:\n  batch_size: 0\n", "sync.batch_size", "at least 1"),
        ("sync:\n  page_concurrency: 0\n", "sync.page_concurrency", "at least 1"),
        ("sync:\n  page_concurrency: 65\n", "sync.page_concurrency", "1 to 64"),
        ("temu:\n  timeout: 0s\n", "temu.timeout", "longer than zero"),
        ("log:\n  level: \"info,=[\"\n", "log.level", "invalid filter"),
        (
            "apps:\n  - {name: a, app_key: k, app_secret: s}\nshops:\n  - {name: s1, region: us, app: b, access_token: t}\n",
            "shops[0].app",
            "no app named \"b\"",
        ),
        (
            "apps:\n  - {name: a, app_key: k, app_secret: s}\n  - {name: a, app_key: k2, app_secret: s}\n",
            "apps[1].name",
            "used twice",
        ),
        (
            "apps:\n  - {name: \"a b\", app_key: k, app_secret: s}\n",
            "apps[0].name",
            "letters, digits",
        ),
        (
            "apps:\n  - {name: a, app_key: k, app_secret: s}\nshops:\n  - {name: s1, region: us, app: a, access_token: t, base_url: \"ftp://x\"}\n",
            "shops[0].base_url",
            "http://",
        ),
    ];
    for (yaml, key, expected) in cases {
        let e = err(load(yaml));
        let found = e
            .issues()
            .iter()
            .any(|i| i.key == *key && i.message.contains(expected));
        assert!(
            found,
            "yaml {yaml:?}: expected `{key}: …{expected}…`, got:\n{e}"
        );
    }
}

#[test]
fn proxy_url_with_credentials_is_rejected_without_echo() {
    let text = err(load(
        "temu:\n  proxy:\n    url: http://user:hunter2@proxy:3128\n",
    ))
    .to_string();
    assert!(text.contains("temu.proxy.url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
