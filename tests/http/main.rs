//! The HTTP endpoint: the server's routes, limits, deadlines, drain and request logs in process
//! (`endpoint`), and the endpoint on its own thread and runtime answering while the daemon's
//! runtime is blocked (`thread`). One test binary; each test serves on a port of its own.

mod endpoint;
mod thread;
