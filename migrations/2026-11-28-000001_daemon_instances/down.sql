DROP TABLE daemon_instances;
