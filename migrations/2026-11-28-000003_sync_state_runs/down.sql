DROP TABLE sync_runs;
DROP TABLE sync_state;
