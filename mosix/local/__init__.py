"""The local cluster (`mosix up`): N agents on 127.0.0.N and one control loop, state in SQLite."""
