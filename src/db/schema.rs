// @generated automatically by Diesel CLI.

diesel::table! {
    daemon_instances (instance_id) {
        instance_id -> Text,
        hostname -> Text,
        pid -> Int4,
        version -> Text,
        started_at -> Timestamptz,
        last_seen -> Timestamptz,
    }
}
