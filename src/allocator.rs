//! The process's allocator: jemalloc, with the settings below (each one measured in
//! docs/benchmarks.md).
//!
//! jemalloc instead of the system allocator because it hands freed memory back to the OS
//! after a burst of connections, where glibc's arenas (and musl's allocator in the image) keep
//! the peak ("Bounds under abuse" has both measured).
//!
//! The settings are in the binary, in the symbol jemalloc reads its options from when it
//! starts, not in `.cargo/config.toml` (`JEMALLOC_SYS_WITH_MALLOC_CONF`): cargo reads that
//! file only when it builds from inside the workspace, so `cargo install --git` or an install
//! from another directory would have silently lost them, at 9 to 20% more instructions per
//! request. A test reads them back from the running allocator. `_RJEM_MALLOC_CONF` in the
//! environment still overrides them at run time.
//!
//! All of the process's unsafe code is here: that symbol, and the controls `idle_trim`
//! calls through [`trim_calls`].

use crate::idle_trim::Allocator;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (jemalloc(3), `malloc_conf`):
/// - `narenas:1`: one arena instead of four per CPU. warden's threads share their memory, and
///   fewer arenas hold fewer partly used pages after a burst of connections (peak RSS at
///   2,000 connections 113 MB against 125 MB).
/// - `tcache_max:65536`: the thread caches keep blocks up to 64 KiB (default 32 KiB). hyper
///   allocates two scratch arrays of `max_headers` entries per request head it parses, 64 KiB
///   each at the default `limits.max_header_bytes`; outside the cache each went through
///   jemalloc's page allocator, 11% of the instructions per proxied request.
/// - `tcache_nslots_small_min:64`, `tcache_gc_incr_bytes:1048576`: a thread cache keeps at
///   least 64 blocks of each small size (default at least 20; twice the blocks of a slab, up
///   to 200, so this raises only sizes with few blocks per slab), and takes a step of its
///   garbage collection, which tidies one size, every 1 MiB allocated or freed (default
///   64 KiB). hyper's upstream connections take a new 8 KiB read buffer for every answer, and
///   jemalloc keeps blocks of that size one per slab: with 20 cached, 32 connections emptied
///   and overfilled the cache and each miss went to the page allocator. Together 8.5% fewer
///   instructions per request, for a peak RSS about 1.5 MB higher at 512 connections;
///   `idle_trim` still hands quiet threads' caches back every 10 s.
///
/// `background_thread:true` comes from tikv-jemallocator's `background_threads` feature,
/// compiled in ahead of these.
#[cfg(feature = "jemalloc")]
const SETTINGS: &[u8] =
    b"narenas:1,tcache_max:65536,tcache_nslots_small_min:64,tcache_gc_incr_bytes:1048576\0";

/// The C `const char *malloc_conf` jemalloc declares weak: this definition replaces it at link
/// time. A thin reference to the first byte has the layout of a C string pointer.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code, non_upper_case_globals)]
#[used]
// SAFETY: no other definition of the symbol exists but jemalloc's own weak one, and jemalloc
// only reads it, as a NUL-terminated string, which SETTINGS is.
#[unsafe(export_name = "_rjem_malloc_conf")]
static malloc_conf: &u8 = &SETTINGS[0];

/// What `idle_trim` asks of jemalloc: `thread.tcache.flush` and `arena.<all>.purge`.
#[cfg(feature = "jemalloc")]
pub(crate) fn trim_calls() -> Allocator {
    Allocator {
        flush: Box::new(|| mallctl_call(c"thread.tcache.flush")),
        // 4096 is MALLCTL_ARENAS_ALL: every arena.
        purge: Box::new(|| mallctl_call(c"arena.4096.purge")),
    }
}

/// Runs a jemalloc control that reads and writes no value. It fails only where there is
/// nothing to do, as a flush with the thread caches off (`_RJEM_MALLOC_CONF=tcache:false`).
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
fn mallctl_call(name: &'static std::ffi::CStr) {
    // SAFETY: both controls used here read and write no value, so the old and new value
    // pointers are null with zero lengths, as mallctl(3) allows; the name is a
    // NUL-terminated constant.
    let _status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
}

/// Without jemalloc (heap profiling builds) there is nothing to hand back.
#[cfg(not(feature = "jemalloc"))]
pub(crate) fn trim_calls() -> Allocator {
    Allocator {
        flush: Box::new(|| {}),
        purge: Box::new(|| {}),
    }
}

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
        assert!(opt::<bool>(c"opt.background_thread"));
        assert_eq!(opt::<u32>(c"opt.narenas"), 1);
        assert_eq!(opt::<usize>(c"opt.tcache_max"), 65_536);
        assert_eq!(opt::<u32>(c"opt.tcache_nslots_small_min"), 64);
        assert_eq!(opt::<usize>(c"opt.tcache_gc_incr_bytes"), 1_048_576);
    }
}
