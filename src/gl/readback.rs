//! The pixel-pack-buffer ring: the one path by which frames leave the GPU.
//!
//! Frame N is read with `glReadPixels` into PBO `N mod k` and fenced ([`PboRing::submit`]). When
//! the caller wants the oldest frame ([`PboRing::complete_oldest`]) its fence is waited on and the
//! buffer is mapped read-only; the mapping is handed out as a [`FrameLease`], which can be cloned
//! and sent to other threads (the socket writers) and reads straight from the mapped memory.
//!
//! Invariants:
//! - A slot is unmapped, written by `glReadPixels`, or deleted only when no lease on it is alive:
//!   [`PboRing::submit`] blocks until the slot's leases are gone, and `Drop` leaks a buffer that is
//!   still leased rather than free memory someone is reading.
//! - The mapping outlives other GL work: a buffer mapped without `GL_MAP_PERSISTENT_BIT` may stay
//!   mapped while the context renders into other objects; only that buffer may not be used by GL
//!   until it is unmapped, and the ring is the only code that touches it.
//! - At most k frames are in flight between `glReadPixels` and the map (k = 1 is the synchronous
//!   readback baseline). Buffers whose frames are leased out do not count against k: with a
//!   spare allowance (`set_spare_limit`) the ring allocates another buffer rather than wait for a
//!   slow lease holder, so a stalled consumer pins one buffer instead of stalling the renderer.
//!   Memory stays bounded by (k + spares) frames; spares are allocated on demand, once, or up
//!   front with `allocate_spares` where a loop must not allocate once it runs.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use glow::HasContext;

use super::GlError;
use super::objects::{Buffer, ReadSource};
use super::output::read_params;
use crate::format::Format;

/// How long one `glClientWaitSync` call blocks before we look again; the wait as a whole has no
/// limit because a readback always completes unless the driver is lost.
const FENCE_POLL_NS: i32 = 100_000_000;

/// The count of leases on one slot, shared between the GL thread and the lease holders.
#[derive(Default)]
struct LeaseCount {
    count: Mutex<usize>,
    released: Condvar,
}

impl LeaseCount {
    fn add(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    fn release(&self) {
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count -= 1;
        if *count == 0 {
            self.released.notify_all();
        }
    }

    fn is_zero(&self) -> bool {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) == 0
    }

    /// Waits up to `timeout` for the count to reach zero; returns whether it did.
    fn wait_zero_for(&self, timeout: std::time::Duration) -> bool {
        let count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        let (count, _) = self
            .released
            .wait_timeout_while(count, timeout, |c| *c > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *count == 0
    }

    fn wait_zero(&self) {
        let count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        let _zero = self
            .released
            .wait_while(count, |c| *c > 0)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// A read-only view of one mapped frame. While any clone of it is alive, the ring neither writes,
/// unmaps nor deletes the buffer behind it, so [`FrameLease::bytes`] is valid for the lease's
/// whole life. Cloning is an atomic increment, never an allocation.
pub struct FrameLease {
    leases: Arc<LeaseCount>,
    ptr: *const u8,
    len: usize,
    frame_index: u64,
}

// SAFETY: the pointer is into a GL mapping that stays valid and unwritten while a lease exists
// (module invariant), and it is only ever read, so sharing or sending it between threads is as
// safe as sharing a `&[u8]`.
unsafe impl Send for FrameLease {}
// SAFETY: as for `Send`: the bytes are immutable while leased.
unsafe impl Sync for FrameLease {}

impl FrameLease {
    /// The frame's pixels in the ring's format, rows tightly packed, bottom-up unless the output
    /// pass flipped them.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is the mapped range of a buffer that the ring keeps mapped and
        // unwritten for as long as this lease lives (module invariant).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The frame index this image was rendered for.
    pub fn frame_index(&self) -> u64 {
        self.frame_index
    }
}

impl Clone for FrameLease {
    fn clone(&self) -> Self {
        self.leases.add();
        Self {
            leases: Arc::clone(&self.leases),
            ptr: self.ptr,
            len: self.len,
            frame_index: self.frame_index,
        }
    }
}

impl Drop for FrameLease {
    fn drop(&mut self) {
        self.leases.release();
    }
}

struct Slot {
    buffer: Buffer,
    fence: Option<glow::Fence>,
    frame_index: u64,
    /// Whether the buffer is mapped (from `complete_oldest` until it is reclaimed).
    mapped: bool,
    leases: Arc<LeaseCount>,
}

/// A ring of pixel-pack buffers, each one frame in the delivered format: k in flight, plus
/// spares for frames leased out.
pub struct PboRing {
    gl: Rc<glow::Context>,
    slots: Vec<Slot>,
    /// Slots read and fenced but not yet mapped, oldest first.
    pending: VecDeque<usize>,
    /// Frames allowed in flight (k).
    in_flight_limit: usize,
    /// Buffers allowed beyond k, for frames whose leases are still held.
    spare_limit: usize,
    /// Where the search for the next free slot starts (round robin).
    next: usize,
    /// The slot chosen by `choose_slot` for the next `submit`.
    chosen: Option<usize>,
    frame_bytes: i32,
    format: Format,
    width_px: u32,
    height_px: u32,
}

impl PboRing {
    /// Allocates `count` buffers for `format` frames of `width_px` × `height_px`.
    pub fn new(
        gl: &Rc<glow::Context>,
        width_px: u32,
        height_px: u32,
        format: Format,
        count: usize,
    ) -> Result<Self, GlError> {
        assert!(count >= 1, "a PBO ring needs at least one buffer");
        let bytes = format.frame_bytes(width_px, height_px);
        let frame_bytes = i32::try_from(bytes).map_err(|_| {
            GlError::Readback(format!(
                "a frame of {bytes} bytes is more than a GL buffer can hold"
            ))
        })?;
        let mut ring = Self {
            gl: Rc::clone(gl),
            slots: Vec::with_capacity(count),
            pending: VecDeque::with_capacity(count),
            in_flight_limit: count,
            spare_limit: 0,
            next: 0,
            chosen: None,
            frame_bytes,
            format,
            width_px,
            height_px,
        };
        for _ in 0..count {
            ring.add_slot()?;
        }
        Ok(ring)
    }

    fn add_slot(&mut self) -> Result<usize, GlError> {
        let buffer = Buffer::new(&self.gl)?;
        // SAFETY: context current (the ring holds an `Rc` of it, so it is on the GL thread);
        // the buffer is alive, and the size fits an i32 (checked in `new`).
        unsafe {
            self.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(buffer.raw()));
            self.gl
                .buffer_data_size(glow::PIXEL_PACK_BUFFER, self.frame_bytes, glow::STREAM_READ);
            self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
        }
        self.slots.push(Slot {
            buffer,
            fence: None,
            frame_index: 0,
            mapped: false,
            leases: Arc::default(),
        });
        Ok(self.slots.len() - 1)
    }

    /// Allows up to `spares` buffers beyond k for frames still leased out (0: always wait).
    pub fn set_spare_limit(&mut self, spares: usize) {
        self.spare_limit = spares;
    }

    /// Allocates every spare the allowance permits now rather than on demand, for a loop that
    /// will need them and must not allocate once it runs (a lossless stream).
    pub fn allocate_spares(&mut self) -> Result<(), GlError> {
        while self.slots.len() < self.in_flight_limit.saturating_add(self.spare_limit) {
            self.add_slot()?;
        }
        Ok(())
    }

    /// Buffers allocated so far (k plus the spares that were needed).
    pub fn buffer_count(&self) -> usize {
        self.slots.len()
    }

    /// Frames that may be in flight, k.
    pub fn capacity(&self) -> usize {
        self.in_flight_limit
    }

    /// Frames read and fenced but not yet handed out.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn frame_len(&self) -> usize {
        self.frame_bytes as usize
    }

    /// Picks the buffer the next `submit` reads into: a free one if there is one (round robin),
    /// else a new spare if the allowance permits, else the next one in turn, which `submit` will
    /// wait for. Returns the frame still mapped in a buffer that is still leased: the caller takes
    /// its own leases on that frame back (the hub's), or `submit` would wait for them.
    pub fn choose_slot(&mut self) -> Result<Option<u64>, GlError> {
        let count = self.slots.len();
        let free = (0..count).map(|i| (self.next + i) % count).find(|&i| {
            let slot = &self.slots[i];
            slot.fence.is_none() && (!slot.mapped || slot.leases.is_zero())
        });
        let index = match free {
            Some(index) => index,
            None if count < self.in_flight_limit.saturating_add(self.spare_limit) => {
                let index = self.add_slot()?;
                log::debug!("all {count} PBOs busy; allocated another");
                index
            }
            None => (0..count)
                .map(|i| (self.next + i) % count)
                .find(|&i| self.slots[i].fence.is_none())
                .ok_or_else(|| {
                    GlError::Readback(
                        "every pixel-pack buffer is in flight; complete one first".into(),
                    )
                })?,
        };
        self.chosen = Some(index);
        let slot = &self.slots[index];
        Ok((slot.mapped && !slot.leases.is_zero()).then_some(slot.frame_index))
    }

    /// Waits up to `timeout` for the slot chosen by `choose_slot` to be free of leases, so that a
    /// caller can give up (a signal) instead of blocking in `submit` behind a stalled reader.
    /// Returns whether `submit` would now go ahead without waiting.
    pub fn wait_chosen_slot(&self, timeout: std::time::Duration) -> bool {
        match self.chosen {
            Some(index) => {
                let slot = &self.slots[index];
                !slot.mapped || slot.leases.wait_zero_for(timeout)
            }
            None => true,
        }
    }

    /// Reads the current contents of `target` into the chosen slot (see `choose_slot`) and fences
    /// it. Waits first for every lease on that slot to be dropped. The ring must not be full.
    pub fn submit(&mut self, source: &dyn ReadSource, frame_index: u64) -> Result<(), GlError> {
        if self.pending.len() == self.in_flight_limit {
            return Err(GlError::Readback(
                "every pixel-pack buffer is in flight; complete one first".into(),
            ));
        }
        let index = match self.chosen.take() {
            Some(index) => index,
            None => {
                self.choose_slot()?;
                self.chosen.take().expect("choose_slot sets it")
            }
        };
        self.reclaim(index);
        let slot = &mut self.slots[index];
        source.bind_read();
        let (format, kind) = read_params(self.format);
        // SAFETY: context current; the buffer is alive, unmapped (just reclaimed) and holds
        // width × height × bytes-per-pixel bytes at offset 0, which is exactly what this read
        // writes because pack alignment 1 adds no row padding.
        let fence = unsafe {
            self.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(slot.buffer.raw()));
            self.gl.pixel_store_i32(glow::PACK_ALIGNMENT, 1);
            self.gl.read_pixels(
                0,
                0,
                self.width_px as i32,
                self.height_px as i32,
                format,
                kind,
                glow::PixelPackData::BufferOffset(0),
            );
            self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
            self.gl
                .fence_sync(glow::SYNC_GPU_COMMANDS_COMPLETE, 0)
                .map_err(GlError::Readback)?
        };
        slot.fence = Some(fence);
        slot.frame_index = frame_index;
        self.pending.push_back(index);
        self.next = (index + 1) % self.slots.len();
        Ok(())
    }

    /// Waits for the oldest in-flight frame, maps it and returns a lease on it; `None` when
    /// nothing is in flight.
    pub fn complete_oldest(&mut self) -> Result<Option<FrameLease>, GlError> {
        let Some(index) = self.pending.pop_front() else {
            return Ok(None);
        };
        let len = self.frame_len();
        let slot = &mut self.slots[index];
        let fence = slot.fence.take().expect("pending slots are fenced");
        // SAFETY: context current; the fence was created by `submit` and is deleted exactly once
        // here; the buffer holds `len` bytes and is not mapped (reclaimed before its readback).
        let ptr = unsafe {
            let mut flags = 0;
            loop {
                match self.gl.client_wait_sync(fence, flags, FENCE_POLL_NS) {
                    glow::ALREADY_SIGNALED | glow::CONDITION_SATISFIED => break,
                    glow::TIMEOUT_EXPIRED => flags = glow::SYNC_FLUSH_COMMANDS_BIT,
                    _ => {
                        self.gl.delete_sync(fence);
                        return Err(GlError::Readback(format!(
                            "glClientWaitSync failed (error 0x{:04x})",
                            self.gl.get_error()
                        )));
                    }
                }
            }
            self.gl.delete_sync(fence);
            self.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(slot.buffer.raw()));
            let ptr = self.gl.map_buffer_range(
                glow::PIXEL_PACK_BUFFER,
                0,
                len as i32,
                glow::MAP_READ_BIT,
            );
            self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
            if ptr.is_null() {
                return Err(GlError::Readback(format!(
                    "glMapBufferRange returned null (error 0x{:04x})",
                    self.gl.get_error()
                )));
            }
            ptr
        };
        slot.mapped = true;
        slot.leases.add();
        Ok(Some(FrameLease {
            leases: Arc::clone(&slot.leases),
            ptr: ptr.cast_const(),
            len,
            frame_index: slot.frame_index,
        }))
    }

    /// Forgets every in-flight frame (the stream went idle; nobody will want them).
    pub fn discard_in_flight(&mut self) {
        while let Some(index) = self.pending.pop_front() {
            if let Some(fence) = self.slots[index].fence.take() {
                // SAFETY: context current; the fence is ours and deleted once (taken above).
                unsafe { self.gl.delete_sync(fence) }
            }
        }
    }

    /// Waits for the slot's leases to end, then unmaps it.
    fn reclaim(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.mapped {
            return;
        }
        slot.leases.wait_zero();
        // SAFETY: context current; the buffer is mapped (flag) and no lease can read it any more
        // (count is zero and only `complete_oldest`, on this thread, creates new ones).
        unsafe {
            self.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(slot.buffer.raw()));
            self.gl.unmap_buffer(glow::PIXEL_PACK_BUFFER);
            self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
        }
        slot.mapped = false;
    }
}

impl Drop for PboRing {
    fn drop(&mut self) {
        self.discard_in_flight();
        for slot in self.slots.drain(..) {
            if slot.mapped && !slot.leases.is_zero() {
                // A lease outlives the ring (a writer thread still sending at exit). Freeing the
                // buffer would pull its bytes away mid-read, so the buffer is leaked instead.
                log::debug!(
                    "PBO for frame {} still leased at exit; leaking it",
                    slot.frame_index
                );
                std::mem::forget(slot.buffer);
                continue;
            }
            if slot.mapped {
                // SAFETY: context current; mapped and unleased, so nobody reads it.
                unsafe {
                    self.gl
                        .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(slot.buffer.raw()));
                    self.gl.unmap_buffer(glow::PIXEL_PACK_BUFFER);
                    self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
                }
            }
        }
    }
}
