//! Empty filter with the fewest exports the proxy-wasm ABI 0.2.1 allows: no on_log/on_done/on_delete,
//! no response callbacks. Measures whether unexported callbacks lower Envoy's per-request cost.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size.max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_ctx: u32, _parent: u32) {}
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _size: usize) -> u32 { 1 }
#[no_mangle]
pub extern "C" fn proxy_on_configure(_root: u32, _size: usize) -> u32 { 1 }
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_ctx: u32, _n: usize, _eos: u32) -> u32 { 0 }
