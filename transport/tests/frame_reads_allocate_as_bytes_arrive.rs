//! A peer announcing a large frame and sending little of it makes the reader hold memory
//! for what arrived, not for what was announced.
#![allow(unsafe_code)] // a counting global allocator is the only way to observe this

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use transport::{FrameIoError, FrameLimits};

struct LargestAllocation;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only records sizes.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same pointer and layout contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same pointer and layout contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

#[tokio::test(start_paused = true)]
async fn a_large_announced_frame_that_never_arrives_does_not_reserve_its_length() {
    let announced_bytes: u32 = 8 * 1024 * 1024;
    let limits = FrameLimits {
        max_len: announced_bytes as usize,
        mid_frame_timeout: Duration::from_secs(5),
        ..FrameLimits::default()
    };
    let (mut peer, mut ours) = tokio::io::duplex(256);
    peer.write_all(&announced_bytes.to_be_bytes())
        .await
        .expect("header");
    peer.write_all(&[0x2a; 100]).await.expect("a little body");
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    let result = transport::read_frame_with::<_, Vec<u8>>(&mut ours, limits).await;
    let largest = LARGEST_BYTES.load(Ordering::Relaxed);
    assert!(
        matches!(result, Err(FrameIoError::Stalled(_))),
        "{result:?}"
    );
    assert!(
        largest <= 64 * 1024,
        "reading a stalled frame allocated {largest} bytes at once"
    );
    drop(peer);
}
