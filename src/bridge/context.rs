//! What the bridge keeps for a running server: the app and the loop's
//! callables, the request tasks' shared environment, and per connection
//! the address tuples and the futures of the app calls waiting on it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use ferrule_engine::server::exchange::ConnId;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::scope::ScopeTemplate;
use super::task::TaskEnv;

/// Python objects the bridge needs on the hot path; set once at start.
pub struct PyRefs {
    /// The ASGI application.
    pub app: Py<PyAny>,
    /// `runner(awaitable, send)`: the coroutine an asyncio Task runs when
    /// requests do not run as [`super::task::RequestTask`]s.
    pub runner: Py<PyAny>,
    /// True: requests run as `RequestTask`s; false: as asyncio Tasks.
    pub task_driver: bool,
    pub create_future: Py<PyAny>,
    /// Starts an app task when requests run as asyncio Tasks:
    /// `asyncio.Task` called with `task_kwargs` (`loop=`, `name=`), or
    /// `loop.create_task` (`name=`) when the loop has a task factory.
    pub spawn: Py<PyAny>,
    pub task_kwargs: Py<PyDict>,
    /// An already-completed future: `send()` returns it when it need not wait.
    pub done: Py<PyAny>,
    pub access_log: Option<Py<PyAny>>,
    /// `debug_log(line)`: the engine's debug lines (connections opened and
    /// closed and why, refused requests); None below debug level.
    pub debug_log: Option<Py<PyAny>>,
    /// End every request body with an empty `more_body=False` event, as
    /// h11-based servers do (`--request-body-end-event`, rolo's quirk).
    pub body_end_event: bool,
    /// Requests start in an empty context instead of a copy of the
    /// loop's (`--reset-contextvars`).
    pub fresh_context: bool,
}

/// One connection, as the bridge knows it.
pub struct ConnEntry {
    /// `(client, server)` scope tuples, built once per connection.
    pub client: Py<PyAny>,
    pub server: Py<PyAny>,
    /// The scope's `tls` extension dict (TLS connections), built once per
    /// connection and copied per request.
    pub tls: Option<Py<PyDict>>,
    /// The futures of a `receive()` and a `send()` waiting on the engine.
    pub recv_waiter: Option<Py<PyAny>>,
    pub send_waiter: Option<Py<PyAny>>,
    /// `--request-body-end-event`: the empty final body event is owed.
    pub end_pending: bool,
}

/// Connection ids are sequential: hash them as they are.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type ConnMap = HashMap<ConnId, ConnEntry, BuildHasherDefault<IdHasher>>;

pub struct Bridge {
    pub refs: PyRefs,
    pub scope: ScopeTemplate,
    pub tasks: Arc<TaskEnv>,
    conns: Mutex<ConnMap>,
}

impl Bridge {
    pub fn new(refs: PyRefs, scope: ScopeTemplate, tasks: Arc<TaskEnv>) -> Self {
        Self {
            refs,
            scope,
            tasks,
            conns: Mutex::new(ConnMap::default()),
        }
    }

    /// The per-connection entries. Only the loop thread, holding the GIL,
    /// takes this lock.
    pub fn conns(&self) -> MutexGuard<'_, ConnMap> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
