//! The process's allocator: jemalloc, with settings compiled in from `.cargo/config.toml`
//! (`JEMALLOC_SYS_WITH_MALLOC_CONF`, each one measured in docs/benchmarks.md).
//!
//! jemalloc instead of the system allocator because it hands freed memory back to the OS
//! after a burst of connections, where glibc's arenas (and musl's allocator in the image) keep
//! the peak ("Bounds under abuse" has both measured). The settings are a build input, not
//! code, so a test reads them back from the built allocator: a build that lost them (a changed
//! config file, a build from outside the workspace) would still pass every other test while
//! costing 9 to 20% more instructions per request.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    /// Reads one of jemalloc's `opt.*` values.
    #[allow(unsafe_code)]
    fn opt<T: Copy + Default>(name: &std::ffi::CStr) -> T {
        let mut value = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `value` is a live, writable `T` of `len` bytes, the size mallctl(3) expects
        // for the named option (checked by the caller's type); no new value is written; the
        // name is NUL-terminated.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(status, 0, "mallctl({name:?}) failed");
        assert_eq!(len, std::mem::size_of::<T>(), "{name:?} has another size");
        value
    }

    #[test]
    fn the_compiled_in_settings_are_in_effect() {
        // An override in the environment is a measurement in progress, not a build fault.
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            eprintln!("_RJEM_MALLOC_CONF is set: the compiled-in settings are not checked");
            return;
        }
        assert_eq!(opt::<u32>(c"opt.narenas"), 1);
        assert_eq!(opt::<usize>(c"opt.tcache_max"), 65_536);
        assert_eq!(opt::<u32>(c"opt.tcache_nslots_small_min"), 64);
        assert_eq!(opt::<usize>(c"opt.tcache_gc_incr_bytes"), 1_048_576);
    }
}
