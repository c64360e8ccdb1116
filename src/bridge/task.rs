//! Runs each request's app coroutine without an `asyncio.Task`.
//!
//! In CPython 3.11 an `asyncio.Task` costs a request about 14k instructions
//! of bookkeeping it does not need (measured with callgrind: `Task.__init__`
//! registering in a Python-level WeakSet, a `Handle` through `call_soon` for
//! the first step, the wrapping runner coroutine, the WeakSet removal).
//! `RequestTask` steps the coroutine itself, as asyncio's Task does:
//!
//! - the first step runs at once, inside `select()`, so a response that needs
//!   no awaiting is complete before `select()` returns;
//! - a step that yields a future resumes as that future's done-callback
//!   (scheduled by asyncio through `call_soon`, in the request's context);
//! - while it runs, the task is the loop's current task (`_enter_task`), so
//!   `asyncio.current_task()`, `asyncio.timeout()`, `TaskGroup` and anyio's
//!   cancel scopes work: it offers the Task methods they call (`cancel`,
//!   `uncancel`, `cancelling`, `_must_cancel`, `_fut_waiter`, `get_coro`...).
//!
//! The engine falls back to real asyncio Tasks when the loop has a task
//! factory or runs in debug mode, and for apps whose call returns an
//! awaitable that is not a coroutine.

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::asyncio::{CancelledError, InvalidStateError};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{ffi, intern, PyTraverseError};

use super::errors::{is_fatal, log_error, ClientDisconnected};

/// What a task reports to when its coroutine ends: the protocol side of
/// the request (an HTTP response today; a WebSocket next).
pub trait TaskOwner: Send + Sync {
    /// The app's coroutine ended (`failed`: it raised). True when it left
    /// its protocol incomplete, which the task then reports.
    fn app_done(&self, py: Python<'_>, failed: bool) -> PyResult<bool>;
}

/// What every request task of one server shares: the loop and the
/// callables it needs, and the live tasks (so a graceful shutdown can
/// cancel what is left).
pub struct TaskEnv {
    pub event_loop: Py<PyAny>,
    pub enter_task: Py<PyAny>,
    pub leave_task: Py<PyAny>,
    /// The name every request task reports (`get_name()`).
    pub task_name: Py<PyAny>,
    /// `report(exc)`: logs an app failure (None: returned without a
    /// complete response).
    pub report: Py<PyAny>,
    pub slab: Mutex<TaskSlab>,
}

impl TaskEnv {
    pub fn tasks(&self) -> MutexGuard<'_, TaskSlab> {
        self.slab.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum State {
    Pending,
    Returned,
    /// Holds the `CancelledError` that `result()` raises.
    Cancelled(Py<PyAny>),
    Failed(Py<PyAny>),
}

/// The live request tasks, so a graceful shutdown can cancel what is left.
#[derive(Default)]
pub struct TaskSlab {
    slots: Vec<Option<Py<RequestTask>>>,
    free: Vec<usize>,
}

impl TaskSlab {
    fn insert(&mut self, task: Py<RequestTask>) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(task);
                i
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) -> Option<Py<RequestTask>> {
        let t = self.slots.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }

    pub fn live(&self, py: Python<'_>) -> Vec<Py<RequestTask>> {
        self.slots
            .iter()
            .flatten()
            .map(|t| t.clone_ref(py))
            .collect()
    }

    /// Empties the slab (the engine is going away).
    pub fn clear(&mut self) -> Vec<Py<RequestTask>> {
        self.free.clear();
        self.slots.drain(..).flatten().collect()
    }
}

#[pyclass(module = "ferrule._ferrule", weakref)]
pub struct RequestTask {
    /// Kept after the end (like asyncio's Task) for `get_coro()`.
    coro: Py<PyAny>,
    context: Py<PyAny>,
    owner: Arc<dyn TaskOwner>,
    env: Arc<TaskEnv>,
    slot: usize,
    state: State,
    fut_waiter: Option<Py<PyAny>>,
    must_cancel: bool,
    cancel_msg: Option<Py<PyAny>>,
    num_cancels: u32,
    callbacks: Vec<(Py<PyAny>, Py<PyAny>)>,
    name: Option<Py<PyAny>>,
}

/// A new `contextvars.Context`, a copy of the current one (what asyncio
/// gives each task).
pub fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: we are attached to the interpreter; PyContext_CopyCurrent
    // returns a new reference or NULL with an exception set, which
    // from_owned_ptr_or_err turns into an error.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }
}

/// A new, empty `contextvars.Context` (`--reset-contextvars`).
pub fn new_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: as for copy_context: attached, and NULL becomes an error.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_New()) }
}

/// Runs `f` with `ctx` (a `contextvars.Context`) as the current context.
pub fn in_context<R>(py: Python<'_>, ctx: &Bound<'_, PyAny>, f: impl FnOnce() -> R) -> PyResult<R> {
    // SAFETY: ctx is a live Context object (made by copy_context) and we are
    // attached to the interpreter on this thread; Exit below runs on the
    // same thread with the same context, as the C API requires.
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let r = f();
    // SAFETY: as above; this pairs with the successful Enter.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(r)
}

pub fn is_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check on a live object, attached to the interpreter.
    unsafe { ffi::PyCoro_CheckExact(obj.as_ptr()) != 0 }
}

enum Sent<'py> {
    Yield(Bound<'py, PyAny>),
    Return,
    Raise(PyErr),
}

fn send_none<'py>(coro: &Bound<'py, PyAny>) -> Sent<'py> {
    let py = coro.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: coro is a live coroutine and we are attached; PyIter_Send
    // stores a new reference in `out` for NEXT and RETURN, and sets an
    // exception for ERROR.
    let r = unsafe { ffi::PyIter_Send(coro.as_ptr(), ffi::Py_None(), &mut out) };
    match r {
        // SAFETY: `out` is the new reference PyIter_Send gave us.
        ffi::PySendResult::PYGEN_NEXT => Sent::Yield(unsafe { Bound::from_owned_ptr(py, out) }),
        ffi::PySendResult::PYGEN_RETURN => {
            // SAFETY: as above; the return value is dropped (apps return None).
            drop(unsafe { Bound::from_owned_ptr(py, out) });
            Sent::Return
        }
        ffi::PySendResult::PYGEN_ERROR => Sent::Raise(PyErr::fetch(py)),
    }
}

fn throw<'py>(coro: &Bound<'py, PyAny>, exc: &Bound<'py, PyAny>) -> Sent<'py> {
    let py = coro.py();
    match coro.call_method1(intern!(py, "throw"), (exc,)) {
        Ok(v) => Sent::Yield(v),
        Err(e) if e.is_instance_of::<PyStopIteration>(py) => Sent::Return,
        Err(e) => Sent::Raise(e),
    }
}

fn cancelled_error(py: Python<'_>, msg: Option<Py<PyAny>>) -> Py<PyAny> {
    match msg {
        Some(m) if !m.is_none(py) => CancelledError::new_err((m,)),
        _ => CancelledError::new_err(()),
    }
    .into_value(py)
    .into_any()
}

impl RequestTask {
    /// Creates the task for `coro`, registers it and runs its first step.
    /// The caller has entered `context`. Errors are only
    /// KeyboardInterrupt/SystemExit raised by the app.
    pub fn start(
        py: Python<'_>,
        env: &Arc<TaskEnv>,
        coro: Bound<'_, PyAny>,
        context: Bound<'_, PyAny>,
        owner: Arc<dyn TaskOwner>,
    ) -> PyResult<()> {
        let task = Bound::new(
            py,
            RequestTask {
                coro: coro.unbind(),
                context: context.unbind(),
                owner,
                env: env.clone(),
                slot: usize::MAX,
                state: State::Pending,
                fut_waiter: None,
                must_cancel: false,
                cancel_msg: None,
                num_cancels: 0,
                callbacks: Vec::new(),
                name: None,
            },
        )?;
        let slot = env.tasks().insert(task.clone().unbind());
        task.borrow_mut().slot = slot;
        step(&task, None)
    }
}

/// One step of the coroutine: send None (or throw `exc`) and act on what it
/// yields, returns or raises. Errors are only KeyboardInterrupt/SystemExit
/// raised by the app; anything else ends or resumes the task, so it never
/// stays pending with no step to come.
fn step(task: &Bound<'_, RequestTask>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
    let py = task.py();
    let (coro, exc, env) = {
        let mut t = task.borrow_mut();
        if !matches!(t.state, State::Pending) {
            return Ok(());
        }
        let mut exc = exc.map(Bound::unbind);
        if t.must_cancel {
            t.must_cancel = false;
            // As asyncio: a cancellation already on its way in keeps its
            // message (anyio recognises its own by it).
            let already = exc
                .as_ref()
                .is_some_and(|e| e.bind(py).is_instance_of::<CancelledError>());
            if !already {
                exc = Some(cancelled_error(py, t.cancel_msg.take()));
            }
        }
        t.fut_waiter = None;
        (t.coro.clone_ref(py), exc, t.env.clone())
    };
    let event_loop = env.event_loop.bind(py);
    if let Err(e) = env.enter_task.bind(py).call1((event_loop, task)) {
        // Cannot run it as the current task: end it as failed, unstarted.
        let _ = coro.bind(py).call_method0(intern!(py, "close"));
        return finish(task, &env, Some(e));
    }
    let sent = match &exc {
        None => send_none(coro.bind(py)),
        Some(e) => throw(coro.bind(py), e.bind(py)),
    };
    if let Err(e) = env.leave_task.bind(py).call1((event_loop, task)) {
        log_error(py, "ferrule: could not leave a request task", e);
    }
    match sent {
        Sent::Yield(obj) => match on_yield(task, &env, obj) {
            Ok(()) => Ok(()),
            // Could not wait for what it yielded: throw the error in at the
            // next step, as asyncio does with a bad yield.
            Err(e) if is_fatal(py, &e) => Err(e),
            Err(e) => {
                let value = e.into_value(py).into_bound(py).into_any();
                if let Err(e) = schedule(task, &env, value) {
                    let _ = coro.bind(py).call_method0(intern!(py, "close"));
                    return finish(task, &env, Some(e));
                }
                Ok(())
            }
        },
        Sent::Return => finish(task, &env, None),
        Sent::Raise(e) => finish(task, &env, Some(e)),
    }
}

/// `loop.call_soon(callback, arg, context=ctx)`.
fn call_soon(
    env: &TaskEnv,
    callback: &Bound<'_, PyAny>,
    arg: &Bound<'_, PyAny>,
    ctx: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = callback.py();
    let kw = PyDict::new(py);
    kw.set_item(intern!(py, "context"), ctx)?;
    env.event_loop
        .bind(py)
        .call_method(intern!(py, "call_soon"), (callback, arg), Some(&kw))?;
    Ok(())
}

/// `fut.cancel(msg=msg)`: true if it was cancelled.
fn cancel_future(fut: &Bound<'_, PyAny>, msg: Option<&Py<PyAny>>) -> PyResult<bool> {
    let py = fut.py();
    let kw = PyDict::new(py);
    kw.set_item(intern!(py, "msg"), msg.map(|m| m.bind(py)))?;
    fut.call_method(intern!(py, "cancel"), (), Some(&kw))?
        .is_truthy()
}

/// Schedules the next step: `arg` None steps, an exception is thrown in.
fn schedule(task: &Bound<'_, RequestTask>, env: &TaskEnv, arg: Bound<'_, PyAny>) -> PyResult<()> {
    let ctx = task.borrow().context.clone_ref(task.py());
    call_soon(env, task.as_any(), &arg, ctx.bind(task.py()))
}

fn on_yield(task: &Bound<'_, RequestTask>, env: &TaskEnv, obj: Bound<'_, PyAny>) -> PyResult<()> {
    let py = task.py();
    if obj.is_none() {
        // A bare `yield` (asyncio.sleep(0)): run again on the next iteration.
        return schedule(task, env, obj);
    }
    let blocking = obj.getattr_opt(intern!(py, "_asyncio_future_blocking"))?;
    let err = match blocking {
        Some(b) if !b.is_none() => {
            let fut_loop = obj.call_method0(intern!(py, "get_loop"))?;
            if !fut_loop.is(env.event_loop.bind(py)) {
                format!(
                    "Task got Future {} attached to a different loop",
                    obj.repr()?
                )
            } else if b.is_truthy()? {
                obj.setattr(intern!(py, "_asyncio_future_blocking"), false)?;
                let kw = PyDict::new(py);
                kw.set_item(intern!(py, "context"), task.borrow().context.bind(py))?;
                obj.call_method(intern!(py, "add_done_callback"), (task,), Some(&kw))?;
                let cancel = {
                    let mut t = task.borrow_mut();
                    t.fut_waiter = Some(obj.clone().unbind());
                    t.must_cancel
                        .then(|| t.cancel_msg.as_ref().map(|m| m.clone_ref(py)))
                };
                // Cancelled while running: cancel what it now waits for.
                if let Some(msg) = cancel {
                    if cancel_future(&obj, msg.as_ref())? {
                        task.borrow_mut().must_cancel = false;
                    }
                }
                return Ok(());
            } else {
                format!(
                    "yield was used instead of yield from in task with {}",
                    obj.repr()?
                )
            }
        }
        _ => format!("Task got bad yield: {}", obj.repr()?),
    };
    let exc = PyRuntimeError::new_err(err).into_value(py).into_any();
    schedule(task, env, exc.into_bound(py))
}

/// The coroutine ended: settle the response, report failures, record the
/// outcome and run the done-callbacks.
fn finish(task: &Bound<'_, RequestTask>, env: &TaskEnv, err: Option<PyErr>) -> PyResult<()> {
    let py = task.py();
    let owner = task.borrow().owner.clone();
    let mut report: Option<Bound<'_, PyAny>> = None;
    let mut fatal = None;
    let plain_return = err.is_none();
    let cancelled_on_return = {
        let mut t = task.borrow_mut();
        let c = err.is_none() && t.must_cancel;
        t.must_cancel = false;
        c.then(|| t.cancel_msg.take())
    };
    let (failed, state) = match err {
        // cancel() during the last step: asyncio marks the task cancelled.
        None if cancelled_on_return.is_some() => (
            false,
            State::Cancelled(cancelled_error(py, cancelled_on_return.flatten())),
        ),
        None => (false, State::Returned),
        // The client went away: not the app's fault, nothing to report.
        Some(e) if e.is_instance_of::<ClientDisconnected>(py) => (false, State::Returned),
        Some(e) if e.is_instance_of::<CancelledError>(py) => {
            (true, State::Cancelled(e.into_value(py).into_any()))
        }
        Some(e) => {
            let v = e.value(py).clone().into_any();
            if is_fatal(py, &e) {
                fatal = Some(e);
            }
            report = Some(v.clone());
            (true, State::Failed(v.unbind()))
        }
    };
    match owner.app_done(py, failed) {
        // Returned (not disconnected) without completing a response.
        Ok(true) if plain_return => report = Some(py.None().into_bound(py)),
        Ok(_) => {}
        Err(e) => log_error(py, "ferrule: could not finish the response", e),
    }
    if let Some(r) = report {
        if let Err(e) = env.report.bind(py).call1((r,)) {
            log_error(py, "ferrule: could not report an application error", e);
        }
    }
    let (callbacks, slot) = {
        let mut t = task.borrow_mut();
        t.state = state;
        t.fut_waiter = None;
        (std::mem::take(&mut t.callbacks), t.slot)
    };
    // Dropped after the lock is released: a last reference may run Python.
    let removed = env.tasks().remove(slot);
    drop(removed);
    for (cb, ctx) in callbacks {
        call_soon(env, cb.bind(py), task.as_any(), ctx.bind(py))?;
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[pymethods]
impl RequestTask {
    /// The task's step callback: None steps, an exception instance is thrown
    /// in, a future (the one it waited for) resumes it with its outcome.
    fn __call__(slf: &Bound<'_, Self>, arg: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if arg.is_none() {
            return step(slf, None);
        }
        if arg.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            return step(slf, Some(arg.clone()));
        }
        match arg.call_method0(intern!(py, "result")) {
            Ok(_) => step(slf, None),
            Err(e) => step(slf, Some(e.into_value(py).into_bound(py).into_any())),
        }
    }

    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let waiter = {
            let mut t = slf.borrow_mut();
            if !matches!(t.state, State::Pending) {
                return Ok(false);
            }
            t.num_cancels += 1;
            t.fut_waiter.as_ref().map(|w| w.clone_ref(py))
        };
        if let Some(w) = waiter {
            // The waiter's cancellation resumes the task with CancelledError.
            if cancel_future(w.bind(py), msg.as_ref())? {
                return Ok(true);
            }
        }
        let mut t = slf.borrow_mut();
        t.must_cancel = true;
        t.cancel_msg = msg;
        Ok(true)
    }

    fn uncancel(&mut self) -> u32 {
        self.num_cancels = self.num_cancels.saturating_sub(1);
        self.num_cancels
    }

    fn cancelling(&self) -> u32 {
        self.num_cancels
    }

    fn done(&self) -> bool {
        !matches!(self.state, State::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(self.state, State::Cancelled(_))
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.state {
            State::Pending => Err(InvalidStateError::new_err("Result is not ready.")),
            State::Returned => Ok(py.None()),
            State::Cancelled(e) | State::Failed(e) => Err(PyErr::from_value(e.bind(py).clone())),
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.state {
            State::Pending => Err(InvalidStateError::new_err("Exception is not set.")),
            State::Returned => Ok(None),
            State::Cancelled(e) => Err(PyErr::from_value(e.bind(py).clone())),
            State::Failed(e) => Ok(Some(e.clone_ref(py))),
        }
    }

    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let ctx = match context {
            Some(c) => c,
            None => copy_context(py)?.unbind(),
        };
        let done = {
            let mut t = slf.borrow_mut();
            if matches!(t.state, State::Pending) {
                t.callbacks
                    .push((callback.clone_ref(py), ctx.clone_ref(py)));
                false
            } else {
                true
            }
        };
        if done {
            let env = slf.borrow().env.clone();
            call_soon(&env, callback.bind(py), slf.as_any(), ctx.bind(py))?;
        }
        Ok(())
    }

    fn remove_done_callback(slf: &Bound<'_, Self>, callback: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        let callbacks: Vec<Py<PyAny>> = slf
            .borrow()
            .callbacks
            .iter()
            .map(|(cb, _)| cb.clone_ref(py))
            .collect();
        // __eq__ may run Python code: compare outside the borrow, and change
        // nothing if a comparison fails.
        let mut remove = Vec::with_capacity(callbacks.len());
        for cb in &callbacks {
            remove.push(cb.bind(py).is(callback) || cb.bind(py).eq(callback)?);
        }
        let mut t = slf.borrow_mut();
        if t.callbacks.len() != remove.len() {
            // The list changed meanwhile (an __eq__ added a callback).
            return Ok(0);
        }
        let mut flags = remove.iter();
        t.callbacks
            .retain(|_| !flags.next().copied().unwrap_or(false));
        Ok(remove.iter().filter(|r| **r).count())
    }

    fn get_coro(&self, py: Python<'_>) -> Py<PyAny> {
        self.coro.clone_ref(py)
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    fn get_loop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.env.event_loop.clone_ref(py))
    }

    fn get_name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.name {
            Some(n) => Ok(n.clone_ref(py)),
            None => Ok(self.env.task_name.clone_ref(py)),
        }
    }

    fn set_name(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        // str() may run Python code: not while the task is borrowed.
        let name = value.str()?.into_any().unbind();
        slf.borrow_mut().name = Some(name);
        Ok(())
    }

    #[pyo3(signature = (*, limit = None))]
    fn get_stack(&self, limit: Option<Py<PyAny>>) -> Vec<Py<PyAny>> {
        let _ = limit;
        Vec::new()
    }

    #[getter(_must_cancel)]
    fn must_cancel(&self) -> bool {
        self.must_cancel
    }

    #[getter(_fut_waiter)]
    fn fut_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.fut_waiter.as_ref().map(|w| w.clone_ref(py))
    }

    #[getter(_loop)]
    fn event_loop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.get_loop(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = match &self.state {
            State::Pending => "pending",
            State::Returned => "finished",
            State::Cancelled(_) => "cancelled",
            State::Failed(_) => "failed",
        };
        let name = self.get_name(py)?;
        Ok(format!(
            "<RequestTask {state} name={}>",
            name.bind(py).repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.coro)?;
        visit.call(&self.context)?;
        if let Some(w) = &self.fut_waiter {
            visit.call(w)?;
        }
        if let Some(m) = &self.cancel_msg {
            visit.call(m)?;
        }
        if let State::Cancelled(e) | State::Failed(e) = &self.state {
            visit.call(e)?;
        }
        for (cb, ctx) in &self.callbacks {
            visit.call(cb)?;
            visit.call(ctx)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.fut_waiter = None;
        self.cancel_msg = None;
        self.callbacks.clear();
    }
}
