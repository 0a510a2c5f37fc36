//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`, ABI v0.2.0), each passing its event to
//! fapi-engine. Every hook runs its body under `catch_unwind`: a panic must not unwind into Envoy
//! (that aborts the process), and on the request path it refuses the request (500), never passes it.
//!
//! Worker threads do not wait on each other's checks: a request hook takes an idle engine worker
//! from the configuration's pool (a lock held for a pop), runs on it alone, and puts it back (a
//! push). Every pooled worker is a [`Worker::sibling`] of the main thread's: one key set, one
//! verified-token cache, one DPoP replay store (in [`Env`]'s shared storage) for all of them. The
//! pool holds at most as many workers as hooks ever ran at once (Envoy's worker threads).

use crate::abi::*;
use crate::host::{callout_response, lock, log_line, ConfigHost, Env, FilterHost, HookState};
use fapi_engine::host::{CalloutResponse, Level};
use fapi_engine::{Action, Background, Request, Worker};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One filter configuration (one `filter_config`): the engine's state, shared by every worker.
pub struct Config {
    env: Env,
    envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    /// The main thread's worker: the tick and its callouts.
    worker: Mutex<Worker>,
    /// Idle workers for request hooks (see the module comment).
    idle: Mutex<Vec<Worker>>,
    background: Mutex<Background>,
    /// The main thread is inside the tick: callout answers Envoy gives inline wait in `deferred`.
    in_tick: AtomicBool,
    deferred: Mutex<Vec<(u32, CalloutResponse)>>,
    ticker: Mutex<Option<Ticker>>,
}

/// A thread that asks Envoy once a second to run the tick on the main thread.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    scheduler: SchedulerPtr,
}

/// Envoy's scheduler handle, used from the ticker thread.
#[derive(Clone, Copy)]
struct SchedulerPtr(envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr);

// SAFETY: the ABI documents the configuration scheduler as usable "from any thread"; the handle is
// deleted only after the ticker thread has been joined.
unsafe impl Send for SchedulerPtr {}

const TICK_EVENT: u64 = 1;

/// One request: the engine's per-request state plus what the shell remembers about the hook.
pub struct Filter {
    config: *const Config,
    request: Request,
    state: HookState,
    deferred: Option<(u32, CalloutResponse)>,
}

fn bytes_of(b: envoy_dynamic_module_type_envoy_buffer) -> Vec<u8> {
    if b.ptr.is_null() || b.length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy hands the hook a buffer of `length` bytes valid during the hook; copied at once.
    unsafe { std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.length) }.to_vec()
}

/// # Safety
/// `ptr` must be a pointer this module returned from `on_http_filter_config_new` and not yet
/// destroyed (Envoy guarantees it for the hooks that receive it).
unsafe fn config_ref<'a>(ptr: envoy_dynamic_module_type_http_filter_config_module_ptr) -> Option<&'a Config> {
    // SAFETY: per the function's contract.
    unsafe { ptr.cast::<Config>().as_ref() }
}

/// # Safety
/// `ptr` must be a pointer this module returned from `on_http_filter_new` and not yet destroyed,
/// and Envoy runs a filter's hooks on one thread, one at a time.
unsafe fn filter_mut<'a>(ptr: envoy_dynamic_module_type_http_filter_module_ptr) -> Option<&'a mut Filter> {
    // SAFETY: per the function's contract.
    unsafe { (ptr as *mut Filter).as_mut() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> envoy_dynamic_module_type_abi_version_module_ptr {
    catch_unwind(|| {
        match crate::compat::check() {
            Ok(()) => ENVOY_DYNAMIC_MODULES_ABI_VERSION.as_ptr().cast(),
            Err(why) => {
                // The log callback itself may be what is missing: stderr too.
                eprintln!("fapi-guard: refusing to load: {why}");
                if crate::compat::has_log() {
                    log_line(Level::Error, &format!("fapi-guard: refusing to load: {why}"));
                }
                std::ptr::null()
            }
        }
    })
    .unwrap_or(std::ptr::null())
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _name: envoy_dynamic_module_type_envoy_buffer,
    config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr {
    let made = catch_unwind(AssertUnwindSafe(|| {
        let bytes = bytes_of(config);
        let mut env = Env::default();
        let worker = {
            let mut host = ConfigHost::config(&env, filter_config_envoy_ptr);
            fapi_engine::load(&mut host, Some(&bytes))?
        };
        env.define_counters(filter_config_envoy_ptr);
        let config = Box::new(Config {
            env,
            envoy: filter_config_envoy_ptr,
            worker: Mutex::new(worker),
            idle: Mutex::new(Vec::new()),
            background: Mutex::new(Background::default()),
            in_tick: AtomicBool::new(false),
            deferred: Mutex::new(Vec::new()),
            ticker: Mutex::new(None),
        });
        // The first tick comes a second later, as in the wasm plugin (clusters may not take callouts
        // while the configuration is still loading); a request meeting no keys fetches them itself.
        *lock(&config.ticker) = start_ticker(filter_config_envoy_ptr);
        Some(Box::into_raw(config))
    }));
    match made {
        Ok(Some(ptr)) => ptr as envoy_dynamic_module_type_http_filter_config_module_ptr,
        Ok(None) => std::ptr::null(),
        Err(_) => {
            log_line(
                Level::Error,
                "fapi-guard: internal error while loading the configuration; refusing to start",
            );
            std::ptr::null()
        }
    }
}

fn start_ticker(config: envoy_dynamic_module_type_http_filter_config_envoy_ptr) -> Option<Ticker> {
    // SAFETY: `config` is the configuration Envoy is creating (main thread).
    let raw = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(config) };
    if raw.is_null() {
        log_line(
            Level::Error,
            "fapi-guard: no scheduler: keys and the revocation feed will not refresh",
        );
        return None;
    }
    let scheduler = SchedulerPtr(raw);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_seen = stop.clone();
    let thread = std::thread::Builder::new()
        .name("fapi-guard-tick".into())
        .spawn(move || {
            let s = scheduler;
            loop {
                std::thread::park_timeout(Duration::from_secs(1));
                if stop_seen.load(Ordering::Acquire) {
                    return;
                }
                // SAFETY: the scheduler is deleted only after this thread is joined.
                unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(s.0, TICK_EVENT) };
            }
        })
        .ok()?;
    Some(Ticker {
        stop,
        thread,
        scheduler,
    })
}

fn run_tick(config: &Config) {
    config.in_tick.store(true, Ordering::Release);
    {
        let mut host = ConfigHost::config(&config.env, config.envoy);
        let mut worker = lock(&config.worker);
        lock(&config.background).tick(&mut worker, &mut host);
        drop(worker);
        // What the request workers counted since the last tick (those busy now: at the next one).
        for w in lock(&config.idle).iter_mut() {
            w.metrics.flush(&mut host);
        }
    }
    config.in_tick.store(false, Ordering::Release);
    let deferred = std::mem::take(&mut *lock(&config.deferred));
    for (id, response) in deferred {
        background_answer(config, id, &response);
    }
}

fn background_answer(config: &Config, id: u32, response: &CalloutResponse) {
    let mut host = ConfigHost::config(&config.env, config.envoy);
    let mut worker = lock(&config.worker);
    lock(&config.background).on_callout(&mut worker, &mut host, id, response);
}

/// An idle worker for a request hook, or a new sibling of the main thread's worker.
fn take_worker(config: &Config, host: &mut FilterHost<'_>) -> Worker {
    let idle = lock(&config.idle).pop();
    match idle {
        Some(w) => w,
        None => lock(&config.worker).sibling(host),
    }
}

/// Back to the pool once the hook is done with it (a hook that panicked drops its worker instead).
fn put_back(config: &Config, worker: Worker) {
    lock(&config.idle).push(worker);
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
) {
    let _ = catch_unwind(|| {
        if filter_config_ptr.is_null() {
            return;
        }
        // SAFETY: Envoy destroys a configuration once, after its filters; the pointer came from
        // `Box::into_raw` in `on_http_filter_config_new`.
        let config = unsafe { Box::from_raw(filter_config_ptr as *mut Config) };
        if let Some(t) = lock(&config.ticker).take() {
            t.stop.store(true, Ordering::Release);
            t.thread.thread().unpark();
            let _ = t.thread.join();
            // SAFETY: the ticker thread that used the scheduler has ended.
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(t.scheduler.0) };
        }
        drop(config);
    });
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _event_id: u64,
) {
    let _ = catch_unwind(|| {
        // SAFETY: Envoy passes the live configuration to its scheduled events.
        if let Some(config) = unsafe { config_ref(filter_config_ptr) } {
            run_tick(config);
        }
    });
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    callout_id: u64,
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    body_chunks_size: usize,
) {
    let _ = catch_unwind(|| {
        // SAFETY: Envoy passes the live configuration that started the callout.
        let Some(config) = (unsafe { config_ref(filter_config_ptr) }) else {
            return;
        };
        let Ok(id) = u32::try_from(callout_id) else { return };
        // SAFETY: headers and body chunks are Envoy's, valid until this hook returns; copied here.
        let response =
            unsafe { callout_response(result, headers, headers_size, body_chunks, body_chunks_size) };
        if config.in_tick.load(Ordering::Acquire) {
            // Answered inside the tick that started it (the tick holds the locks): handled after it.
            lock(&config.deferred).push((id, response));
        } else {
            background_answer(config, id, &response);
        }
    });
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
) -> envoy_dynamic_module_type_http_filter_module_ptr {
    catch_unwind(|| {
        if filter_config_ptr.is_null() {
            return std::ptr::null();
        }
        let filter = Box::new(Filter {
            config: filter_config_ptr.cast(),
            request: Request::new(),
            state: HookState::default(),
            deferred: None,
        });
        Box::into_raw(filter) as envoy_dynamic_module_type_http_filter_module_ptr
    })
    .unwrap_or(std::ptr::null())
}

/// Refuses the request with a 500 (a panic, or a filter Envoy gave without state).
fn fail_closed(config: Option<&Config>, envoy: envoy_dynamic_module_type_http_filter_envoy_ptr, why: &str) {
    let fallback = Env::default();
    let env = config.map_or(&fallback, |c| &c.env);
    let mut state = HookState::default();
    let mut host = FilterHost::filter(env, envoy, &mut state);
    Request::fail_closed(&mut host, why);
}

/// Runs one request event (`event` calls the engine) on a pooled worker, then a callout Envoy
/// answered inside it; `None` when there is no filter or configuration. A panic is caught by the
/// caller's `catch_unwind`.
///
/// # Safety
/// `filter_module_ptr` is the filter this module created for the stream, on its thread.
unsafe fn request_event(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    event: impl FnOnce(&mut Request, &mut Worker, &mut FilterHost<'_>) -> Action,
) -> Option<Action> {
    // SAFETY: Envoy passes the filter this module created for the stream, on its thread.
    let filter = unsafe { filter_mut(filter_module_ptr) }?;
    // SAFETY: a filter's configuration outlives it (Envoy destroys filters first).
    let config = unsafe { filter.config.as_ref() }?;
    filter.state.in_hook = true;
    filter.state.resume_requested = false;
    let mut host = FilterHost::filter(&config.env, filter_envoy_ptr, &mut filter.state);
    let mut worker = take_worker(config, &mut host);
    let mut action = event(&mut filter.request, &mut worker, &mut host);
    // A callout Envoy answered inside the call that started it.
    if let Some((id, response)) = filter.deferred.take() {
        filter.request.on_callout(&mut worker, &mut host, id, &response);
    }
    // The batched counters (allowed, token cache) go out on the tick, not per request.
    put_back(config, worker);
    if filter.state.resume_requested {
        action = Action::Continue;
    }
    filter.state.in_hook = false;
    Some(action)
}

/// After a request event that failed (a panic, or no state): refuse with a 500.
///
/// # Safety
/// As for [`request_event`].
unsafe fn refuse_after_failure(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    why: &str,
) {
    // SAFETY: as above; only the configuration is read to count the refusal.
    let config = unsafe { filter_mut(filter_module_ptr) }.and_then(|f| {
        // SAFETY: as above.
        unsafe { f.config.as_ref() }
    });
    let _ = catch_unwind(AssertUnwindSafe(|| fail_closed(config, filter_envoy_ptr, why)));
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_headers_status {
    let decided = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the live filter of this stream, on its thread.
        unsafe {
            request_event(filter_envoy_ptr, filter_module_ptr, |request, worker, host| {
                #[cfg(feature = "test-panic")]
                crate::test_panic::on_request(host);
                request.on_request_headers(worker, host, end_of_stream)
            })
        }
    }));
    match decided {
        Ok(Some(Action::Continue)) => {
            envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue
        }
        Ok(Some(Action::Pause)) => {
            envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration
        }
        Ok(None) | Err(_) => {
            // SAFETY: as above.
            unsafe { refuse_after_failure(filter_envoy_ptr, filter_module_ptr, "request hook") };
            envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration
        }
    }
}

/// The request body: for a request the engine holds, Envoy buffers it (StopIterationAndBuffer)
/// until the engine decides; every other request's body passes untouched, never read.
///
/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_body_status {
    let decided = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the live filter of this stream, on its thread.
        let wanted = unsafe { filter_mut(filter_module_ptr) }.map(|f| f.request.wants_body_events())?;
        if !wanted {
            // Every other rule: the body passes untouched, the engine (and its lock) not involved.
            return Some(Action::Continue);
        }
        // SAFETY: as above.
        unsafe {
            request_event(filter_envoy_ptr, filter_module_ptr, |request, worker, host| {
                let size = host.request_body_size();
                request.on_request_body(worker, host, size, end_of_stream)
            })
        }
    }));
    match decided {
        Ok(Some(Action::Continue)) => envoy_dynamic_module_type_on_http_filter_request_body_status_Continue,
        Ok(Some(Action::Pause)) => {
            envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer
        }
        Ok(None) | Err(_) => {
            // SAFETY: as above.
            unsafe { refuse_after_failure(filter_envoy_ptr, filter_module_ptr, "request body hook") };
            envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer
        }
    }
}

/// Trailers end a held request's body: the engine decides on what was buffered.
///
/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_request_trailers_status {
    let decided = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the live filter of this stream, on its thread.
        let wanted = unsafe { filter_mut(filter_module_ptr) }.map(|f| f.request.wants_body_events())?;
        if !wanted {
            return Some(Action::Continue);
        }
        // SAFETY: as above.
        unsafe {
            request_event(filter_envoy_ptr, filter_module_ptr, |request, worker, host| {
                request.on_request_trailers(worker, host)
            })
        }
    }));
    match decided {
        Ok(Some(Action::Continue)) => {
            envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue
        }
        Ok(Some(Action::Pause)) => {
            envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration
        }
        Ok(None) | Err(_) => {
            // SAFETY: as above.
            unsafe { refuse_after_failure(filter_envoy_ptr, filter_module_ptr, "request trailers hook") };
            envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration
        }
    }
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    callout_id: u64,
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    body_chunks_size: usize,
) {
    let handled = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the live filter that started the callout, on its thread.
        let filter = unsafe { filter_mut(filter_module_ptr) }?;
        // SAFETY: a filter's configuration outlives it.
        let config = unsafe { filter.config.as_ref() }?;
        let id = u32::try_from(callout_id).ok()?;
        // SAFETY: headers and body chunks are Envoy's, valid until this hook returns; copied here.
        let response =
            unsafe { callout_response(result, headers, headers_size, body_chunks, body_chunks_size) };
        if filter.state.in_hook {
            // Inside the request hook that started it (which runs the engine): handled after it.
            filter.deferred = Some((id, response));
            return Some(());
        }
        let mut host = FilterHost::filter(&config.env, filter_envoy_ptr, &mut filter.state);
        let mut worker = take_worker(config, &mut host);
        filter.request.on_callout(&mut worker, &mut host, id, &response);
        put_back(config, worker);
        Some(())
    }));
    if !matches!(handled, Ok(Some(()))) {
        // SAFETY: as above.
        let config = unsafe { filter_mut(filter_module_ptr) }.and_then(|f| {
            // SAFETY: as above.
            unsafe { f.config.as_ref() }
        });
        let _ = catch_unwind(AssertUnwindSafe(|| {
            fail_closed(config, filter_envoy_ptr, "callout hook")
        }));
    }
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_headers_status {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the live filter, on its thread.
        let Some(filter) = (unsafe { filter_mut(filter_module_ptr) }) else {
            return;
        };
        // SAFETY: a filter's configuration outlives it.
        let Some(config) = (unsafe { filter.config.as_ref() }) else {
            return;
        };
        let mut host = FilterHost::filter(&config.env, filter_envoy_ptr, &mut filter.state);
        filter.request.on_response_headers(&mut host);
    }));
    envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
    let _ = catch_unwind(|| {
        if !filter_module_ptr.is_null() {
            // SAFETY: Envoy destroys each filter once; the pointer came from `Box::into_raw`.
            drop(unsafe { Box::from_raw(filter_module_ptr as *mut Filter) });
        }
    });
}

// ------------------------------------------------------------------------------------------------
// Hooks the module does not use: Envoy resolves every one at load, so each is exported, doing
// nothing (the body, trailers and streams pass untouched).
// ------------------------------------------------------------------------------------------------

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_body_status {
    envoy_dynamic_module_type_on_http_filter_response_body_status_Continue
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_response_trailers_status {
    envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _event_id: u64,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _response_code: u32,
    _details: envoy_dynamic_module_type_envoy_buffer,
    _reset_imminent: bool,
) -> envoy_dynamic_module_type_on_http_filter_local_reply_status {
    envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _data: *const envoy_dynamic_module_type_envoy_buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    _trailers_size: usize,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _reason: envoy_dynamic_module_type_http_stream_reset_reason,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _stream_id: u64,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _stream_id: u64,
    _data: *const envoy_dynamic_module_type_envoy_buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _stream_id: u64,
    _trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    _trailers_size: usize,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _stream_id: u64,
) {
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _stream_id: u64,
    _reason: envoy_dynamic_module_type_http_stream_reset_reason,
) {
}

/// Per-route configuration is not used: refused, so a route cannot silently expect one.
/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: envoy_dynamic_module_type_envoy_buffer,
    _config: envoy_dynamic_module_type_envoy_buffer,
) -> *const c_void {
    std::ptr::null()
}

/// # Safety
/// Called by Envoy only, with the pointers ABI v0.2.0 describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}
