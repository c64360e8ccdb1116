//! The bridge's errors and how they are reported.

use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    _ferrule,
    ClientDisconnected,
    PyOSError,
    "The client went away; the response can no longer be sent."
);

/// KeyboardInterrupt and SystemExit stop the loop, as they would from an
/// asyncio Task; anything else an app raises concerns its own request.
pub fn is_fatal(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py)
}

/// Logs `err` with its traceback on `ferrule.error` (stderr if logging
/// itself fails).
pub fn log_error(py: Python<'_>, msg: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("ferrule.error",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
        logger.call_method("error", (msg,), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        err.display(py);
    }
}
