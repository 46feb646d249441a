//! The pixel-pack-buffer ring: the one path by which frames leave the GPU.
//!
//! One frame's readback is two typed steps: [`PboRing::acquire`] picks the buffer the frame goes
//! into and says whether a lease still pins it ([`Slot::leased_frame`]); [`Slot::submit`] runs
//! `glReadPixels` into it and fences it. [`PboRing::complete_oldest`] waits on the oldest fence,
//! maps that buffer read-only and hands the mapping out as a [`FrameLease`], which can be cloned
//! and sent to other threads (the outputs) and reads straight from the mapped memory.
//!
//! Invariants:
//! - **A lease cannot outlive the mapping.** A [`FrameLease<'ctx>`] borrows the
//!   [`HeadlessContext`] the ring was made on, so the compiler refuses any program in which the
//!   context (and with it every mapping) is destroyed while a lease is alive, or in which a lease
//!   reaches a thread that is not scoped inside the context's life (`std::thread::spawn` needs
//!   `'static`). Within the context's life, a slot is unmapped, written by `glReadPixels`, or
//!   deleted only when no lease on it is alive: [`Slot::submit`] waits for the slot's leases,
//!   and the ring's `Drop` hands every mapped buffer, with its lease count, to the context
//!   (`Gl::retire`), which unmaps and deletes it on the GL thread once the last lease has
//!   ended, wherever that lease was dropped (Smithay's renderer defers its cleanup the same way).
//! - The mapping outlives other GL work: a buffer mapped without `GL_MAP_PERSISTENT_BIT` may stay
//!   mapped while the context renders into other objects; only that buffer may not be used by GL
//!   until it is unmapped, and the ring is the only code that touches it.
//! - At most k frames are in flight between `glReadPixels` and the map (k = 1 is the synchronous
//!   readback baseline). Buffers whose frames are leased out do not count against k: with a
//!   spare allowance (`set_spare_limit`) the ring allocates another buffer rather than wait for a
//!   slow lease holder, so a stalled consumer pins one buffer instead of stalling the renderer.
//!   Memory stays bounded by (k + spares) frames; spares are allocated on demand, once, or up
//!   front with `allocate_spares` where a loop must not allocate once it runs.

use std::any::Any;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::Duration;

use glow::HasContext;

use super::GlError;
use super::context::SharedContext;
use super::context::{Gl, HeadlessContext, Retire};
use super::objects::{Attachment, Buffer, Fence, Framebuffer, ReadSource, SharedColor};
use super::output::read_params;
use crate::format::Format;

/// How long one fence wait blocks before we look again; the wait as a whole has no limit because
/// a readback always completes unless the driver is lost.
const FENCE_POLL_NS: u64 = 100_000_000;

/// What a frame is, as it travels from the render loop through the ring to the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// Numbers every frame the process renders, never restarting: what the ring and the hub
    /// order frames by.
    pub sequence: u64,
    /// The scene's frame index: the image this is (restarts at 0 when a stream goes idle).
    pub frame_index: u64,
    /// When the frame was rendered, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The control request this frame answers (0: none).
    pub request_id: u64,
}

/// The count of leases on one slot, shared between the GL thread and the lease holders.
#[derive(Default)]
struct LeaseCount {
    count: Mutex<usize>,
    released: Condvar,
    /// A lent slot's loan holder (see [`Lender`]); `None` for a pixel-pack buffer.
    loan: Option<Mutex<Box<dyn Any + Send>>>,
    /// Keeps the lender, and with it the memory its loans are in, alive while a lease may read
    /// it.
    _lender: Option<Arc<dyn Lender>>,
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

    /// Waits up to `timeout` (forever for `None`) for the count to reach zero; returns whether
    /// it did.
    fn wait_zero(&self, timeout: Option<Duration>) -> bool {
        let count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        let count = match timeout {
            Some(timeout) => {
                self.released
                    .wait_timeout_while(count, timeout, |c| *c > 0)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .released
                .wait_while(count, |c| *c > 0)
                .unwrap_or_else(PoisonError::into_inner),
        };
        *count == 0
    }
}

/// A read-only view of one mapped frame. While any clone of it is alive, the ring neither writes,
/// unmaps nor deletes the buffer behind it, and the `'ctx` borrow keeps the context (and so the
/// mapping) alive: [`FrameLease::bytes`] is valid for the lease's whole life. Cloning is an atomic
/// increment, never an allocation.
pub struct FrameLease<'ctx> {
    leases: Arc<LeaseCount>,
    ptr: *const u8,
    len: usize,
    meta: FrameMeta,
    // A function pointer keeps the borrow without making the lease `!Send` the way a plain
    // `&HeadlessContext` (which holds an `Rc`) would; sending is justified below.
    _context: PhantomData<fn() -> &'ctx HeadlessContext>,
}

// SAFETY: the pointer is into a GL mapping that stays valid and unwritten while a lease exists
// (module invariant: the ring waits for leases, and the `'ctx` borrow keeps the context alive),
// and it is only ever read, so sending it to another thread is as safe as sending a `&[u8]`.
unsafe impl Send for FrameLease<'_> {}
// SAFETY: as for `Send`: the bytes are immutable while leased.
unsafe impl Sync for FrameLease<'_> {}

impl FrameLease<'_> {
    /// The frame's pixels in the ring's format, rows tightly packed, bottom-up unless the output
    /// pass flipped them.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is the mapped range of a buffer that the ring keeps mapped and
        // unwritten, in a context that stays alive, for as long as this lease lives (module
        // invariant).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Which frame this is.
    pub fn meta(&self) -> FrameMeta {
        self.meta
    }

    /// Runs `f` on the holder of the loan this frame was read into, if it was read into lent
    /// memory ([`LentRing`]), so that the lender's side can take the loan to send it on
    /// ([`Lender`] says what may be done with it); returns whether there was one.
    pub fn with_loan(&self, f: &mut dyn FnMut(&mut (dyn Any + Send))) -> bool {
        let Some(loan) = &self.leases.loan else {
            return false;
        };
        f(&mut **loan.lock().unwrap_or_else(PoisonError::into_inner));
        true
    }
}

impl Clone for FrameLease<'_> {
    fn clone(&self) -> Self {
        self.leases.add();
        Self {
            leases: Arc::clone(&self.leases),
            ptr: self.ptr,
            len: self.len,
            meta: self.meta,
            _context: PhantomData,
        }
    }
}

impl Drop for FrameLease<'_> {
    fn drop(&mut self) {
        self.leases.release();
    }
}

struct RingSlot {
    buffer: Buffer,
    /// Set from the readback until the frame is mapped.
    fence: Option<Fence>,
    meta: FrameMeta,
    /// Whether the buffer is mapped (from `complete_oldest` until it is reclaimed).
    mapped: bool,
    leases: Arc<LeaseCount>,
}

impl RingSlot {
    fn is_free(&self) -> bool {
        self.fence.is_none() && (!self.mapped || self.leases.is_zero())
    }

    /// Unmaps the buffer if it is mapped; the caller has seen its lease count at zero.
    fn unmap(&mut self, gl: &glow::Context) {
        if !self.mapped {
            return;
        }
        // SAFETY: context current (the caller's `Gl` checked, or the context runs its retired
        // work); the buffer is alive and mapped (flag), and no lease can read it any more: the
        // count is zero and only `complete_oldest`, on this thread, creates new ones (and never
        // for a slot the ring has let go of).
        unsafe {
            gl.bind_buffer(glow::PIXEL_PACK_BUFFER, Some(self.buffer.raw()));
            gl.unmap_buffer(glow::PIXEL_PACK_BUFFER);
            gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
        }
        self.mapped = false;
    }
}

/// A slot the ring let go of while its frame was still leased: the buffer must stay mapped and
/// alive until the last lease ends (possibly on another thread), then it is unmapped, and
/// dropping the slot deletes the buffer.
impl Retire for RingSlot {
    fn release(&mut self, gl: &glow::Context) -> bool {
        if !self.leases.is_zero() {
            return false;
        }
        self.unmap(gl);
        true
    }
}

/// A ring of pixel-pack buffers, each one frame in the delivered format: k in flight, plus
/// spares for frames leased out.
pub struct PboRing<'ctx> {
    gl: Gl,
    slots: Vec<RingSlot>,
    /// Slots read and fenced but not yet mapped, oldest first.
    pending: VecDeque<usize>,
    /// Frames allowed in flight (k).
    in_flight_limit: usize,
    /// Buffers allowed beyond k, for frames whose leases are still held.
    spare_limit: usize,
    /// Where the search for the next free slot starts (round robin).
    next: usize,
    frame_bytes: i32,
    format: Format,
    width_px: u32,
    height_px: u32,
    _context: PhantomData<&'ctx HeadlessContext>,
}

/// The buffer chosen for the next readback ([`PboRing::acquire`]). It borrows the ring, so
/// nothing else can happen to the ring between choosing and submitting.
pub struct Slot<'r, 'ctx> {
    ring: &'r mut PboRing<'ctx>,
    index: usize,
}

impl Slot<'_, '_> {
    /// The frame whose leases still pin this buffer (a frame published earlier that some output
    /// holds): the caller withdraws it from whoever hands it out, or [`Slot::submit`] will wait
    /// for its current holders to finish.
    pub fn leased_frame(&self) -> Option<FrameMeta> {
        let slot = &self.ring.slots[self.index];
        (slot.mapped && !slot.leases.is_zero()).then_some(slot.meta)
    }

    /// Waits up to `timeout` for every lease on this buffer to end, so a caller can give up (a
    /// signal) instead of blocking in `submit` behind a stalled reader. Returns whether the
    /// buffer is free now.
    pub fn wait_free(&self, timeout: Duration) -> bool {
        let slot = &self.ring.slots[self.index];
        !slot.mapped || slot.leases.wait_zero(Some(timeout))
    }

    /// Reads the current contents of `source` into this buffer and fences it, first waiting for
    /// any lease on it to end.
    pub fn submit(self, source: &dyn ReadSource, meta: FrameMeta) -> Result<(), GlError> {
        let Slot { ring, index } = self;
        ring.reclaim(index);
        source.bind_read();
        let (format, kind) = read_params(ring.format);
        let slot = &ring.slots[index];
        // SAFETY: context current (`Gl` checks that it is the ring's, on this thread); the
        // buffer is alive, unmapped (just reclaimed) and holds width × height × bytes-per-pixel
        // bytes at offset 0, which is exactly what this read writes because pack alignment 1
        // adds no row padding.
        unsafe {
            ring.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(slot.buffer.raw()));
            ring.gl.pixel_store_i32(glow::PACK_ALIGNMENT, 1);
            ring.gl.read_pixels(
                0,
                0,
                ring.width_px as i32,
                ring.height_px as i32,
                format,
                kind,
                glow::PixelPackData::BufferOffset(0),
            );
            ring.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
        }
        let fence = Fence::new(&ring.gl)?;
        let slot = &mut ring.slots[index];
        slot.fence = Some(fence);
        slot.meta = meta;
        ring.pending.push_back(index);
        ring.next = (index + 1) % ring.slots.len();
        Ok(())
    }
}

impl<'ctx> PboRing<'ctx> {
    /// Allocates `count` buffers for `format` frames of `width_px` × `height_px` on `context`.
    pub fn new(
        context: &'ctx HeadlessContext,
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
            gl: context.gl().clone(),
            slots: Vec::with_capacity(count),
            pending: VecDeque::with_capacity(count),
            in_flight_limit: count,
            spare_limit: 0,
            next: 0,
            frame_bytes,
            format,
            width_px,
            height_px,
            _context: PhantomData,
        };
        for _ in 0..count {
            ring.add_slot()?;
        }
        Ok(ring)
    }

    fn add_slot(&mut self) -> Result<usize, GlError> {
        let buffer = Buffer::new(&self.gl)?;
        // SAFETY: context current (`Gl` checks that it is the ring's, on this thread);
        // the buffer is alive, and the size fits an i32 (checked in `new`).
        unsafe {
            self.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(buffer.raw()));
            self.gl
                .buffer_data_size(glow::PIXEL_PACK_BUFFER, self.frame_bytes, glow::STREAM_READ);
            self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
        }
        self.slots.push(RingSlot {
            buffer,
            fence: None,
            meta: FrameMeta::default(),
            mapped: false,
            leases: Arc::default(),
        });
        Ok(self.slots.len() - 1)
    }

    /// Allows up to `spares` buffers beyond k for frames still leased out (0: always wait).
    pub fn set_spare_limit(&mut self, spares: usize) {
        self.spare_limit = spares;
    }

    /// Allocates up to `spares` of the spares the allowance permits now rather than on demand,
    /// for a loop that will need them and must not allocate once it runs (a lossless stream
    /// needs one). The rest of the allowance stays on demand: each spare is a whole frame.
    pub fn allocate_spares(&mut self, spares: usize) -> Result<(), GlError> {
        let wanted = self
            .in_flight_limit
            .saturating_add(spares.min(self.spare_limit));
        while self.slots.len() < wanted {
            self.add_slot()?;
        }
        Ok(())
    }

    /// Buffers allocated so far (k plus the spares that were needed).
    pub fn buffer_count(&self) -> usize {
        self.slots.len()
    }

    /// Frame width in pixels.
    pub fn width_px(&self) -> u32 {
        self.width_px
    }

    /// Frame height in pixels.
    pub fn height_px(&self) -> u32 {
        self.height_px
    }

    /// The format frames are read back in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Frames that may be in flight, k.
    pub fn capacity(&self) -> usize {
        self.in_flight_limit
    }

    /// Whether k frames are in flight, so the oldest must be completed before the next submit.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.in_flight_limit
    }

    /// Picks the buffer the next frame is read into: a free one if there is one (round robin),
    /// else a new spare if the allowance permits, else the next one in turn, whose leases the
    /// caller withdraws or waits for (see [`Slot`]). Fails when k frames are in flight: complete
    /// one first.
    pub fn acquire(&mut self) -> Result<Slot<'_, 'ctx>, GlError> {
        // Buffers another ring of this context let go of while leased may be free by now.
        self.gl.run_deferred();
        if self.is_full() {
            return Err(GlError::Readback(
                "every pixel-pack buffer is in flight; complete one first".into(),
            ));
        }
        let count = self.slots.len();
        let in_turn = |ring: &Self, pick: &dyn Fn(&RingSlot) -> bool| {
            (0..count)
                .map(|i| (ring.next + i) % count)
                .find(|&i| pick(&ring.slots[i]))
        };
        let index = match in_turn(self, &RingSlot::is_free) {
            Some(index) => index,
            None if count < self.in_flight_limit.saturating_add(self.spare_limit) => {
                log::debug!("all {count} PBOs busy; allocating another");
                self.add_slot()?
            }
            // Fewer than k are pending, so some slot has no fence: it is leased.
            None => in_turn(self, &|slot| slot.fence.is_none())
                .ok_or_else(|| GlError::Readback("every pixel-pack buffer is in flight".into()))?,
        };
        Ok(Slot { ring: self, index })
    }

    /// Waits for the oldest in-flight frame, maps it and returns a lease on it; `None` when
    /// nothing is in flight.
    pub fn complete_oldest(&mut self) -> Result<Option<FrameLease<'ctx>>, GlError> {
        let Some(&index) = self.pending.front() else {
            return Ok(None);
        };
        let len = self.frame_bytes as usize;
        let slot = &mut self.slots[index];
        let fence = slot.fence.as_ref().expect("pending slots are fenced");
        while !fence.wait(FENCE_POLL_NS)? {}
        self.pending.pop_front();
        slot.fence = None;
        // SAFETY: context current; the buffer holds `len` bytes and is not mapped (reclaimed
        // before its readback), and the readback into it has completed (fence signalled).
        let ptr = unsafe {
            self.gl
                .bind_buffer(glow::PIXEL_PACK_BUFFER, Some(slot.buffer.raw()));
            let ptr = self.gl.map_buffer_range(
                glow::PIXEL_PACK_BUFFER,
                0,
                len as i32,
                glow::MAP_READ_BIT,
            );
            self.gl.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
            ptr
        };
        if ptr.is_null() {
            // SAFETY: context current; a plain query.
            let error = unsafe { self.gl.get_error() };
            return Err(GlError::Readback(format!(
                "glMapBufferRange returned null (error 0x{error:04x})"
            )));
        }
        slot.mapped = true;
        slot.leases.add();
        Ok(Some(FrameLease {
            leases: Arc::clone(&slot.leases),
            ptr: ptr.cast_const(),
            len,
            meta: slot.meta,
            _context: PhantomData,
        }))
    }

    /// Forgets every in-flight frame (the stream went idle; nobody will want them).
    pub fn discard_in_flight(&mut self) {
        while let Some(index) = self.pending.pop_front() {
            self.slots[index].fence = None;
        }
    }

    /// Waits for the slot's leases to end, then unmaps it.
    fn reclaim(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.mapped {
            return;
        }
        slot.leases.wait_zero(None);
        slot.unmap(&self.gl);
    }
}

impl Drop for PboRing<'_> {
    fn drop(&mut self) {
        self.discard_in_flight();
        for slot in self.slots.drain(..) {
            if slot.mapped {
                // Unmapped now if no lease reads it, else when the last lease has ended: the
                // context keeps it until then, on this thread, and at the latest until it is
                // destroyed, which the `'ctx` borrow places after every lease.
                self.gl.retire(Box::new(slot));
            }
            // An unmapped slot's buffer deletes itself.
        }
    }
}

/// Memory that the consumer of frames lends the readback, so that the driver's copy is the only
/// one a frame takes (the shared-memory output lends iceoryx2 samples). A lender's loans live in
/// holders it makes ([`Lender::holder`], once per slot, so no frame allocates one), of a type
/// only it knows; the [`LentRing`] keeps them and its frames' consumers reach them through
/// [`FrameLease::with_loan`].
///
/// What a lender promises: memory it lends stays mapped, at the same address, for as long as the
/// lender lives (a lease keeps it alive), also after the loan is sent on or returned. It may lend
/// the same memory again once a loan is sent and read, or returned; the ring never writes memory
/// that a live lease shows (see [`LentRing`]). Whoever takes a filled loan from a holder to send
/// it must not write its payload.
pub trait Lender: Send + Sync {
    /// A new, empty holder.
    fn holder(&self) -> Box<dyn Any + Send>;

    /// Returns whatever loan `holder` holds, loans `len` bytes into it, and gives back that
    /// memory, uninitialised.
    fn lend<'h>(
        &self,
        holder: &'h mut (dyn Any + Send),
        len: usize,
    ) -> Result<&'h mut [MaybeUninit<u8>], String>;

    /// Marks the loan in `holder` as written, ready to be sent on.
    ///
    /// # Safety
    /// Every byte of the memory that the last [`Lender::lend`] into `holder` returned has been
    /// written since.
    unsafe fn filled(&self, holder: &mut (dyn Any + Send));

    /// Returns the loan in `holder`, if it holds one, unsent.
    fn clear(&self, holder: &mut (dyn Any + Send));
}

/// Slots of a [`LentRing`]: the frame being read, the newest published one, the one a consumer
/// is sending, and one to spare.
pub const LENT_SLOTS: usize = 4;

/// The most loans a [`LentRing`] holds at once: one per slot, and one set aside per other slot
/// (see [`LentRing`]). A lender must allow this many.
pub const MAX_LOANS: usize = 2 * LENT_SLOTS;

/// One slot of a [`LentRing`]: the loan holder (in `leases`, shared with the slot's leases), and
/// where the newest frame read into it lies.
struct LentSlot {
    leases: Arc<LeaseCount>,
    /// The address of that frame's memory (null before the first).
    ptr: *const u8,
    meta: FrameMeta,
}

/// A loan kept from the lender because a live lease shows its memory.
struct SetAside {
    holder: Box<dyn Any + Send>,
    /// The slot whose frame shows it.
    shown_by: usize,
    /// Its address.
    ptr: *const u8,
}

/// A frame handed to the reader thread and not collected yet.
struct InFlight {
    slot: usize,
    ptr: *mut u8,
    meta: FrameMeta,
}

/// What the reader thread is asked to do: read target `target` into the frame's bytes at
/// `dest`.
struct ReadJob {
    target: usize,
    /// The loan's address, as an integer so that the job can cross threads: the ring keeps the
    /// loan, which nothing else touches, until the thread answers.
    dest: usize,
}

/// The thread that reads frames into loans, on a context of its own in the renderer's share
/// group. It stops when its job channel closes; dropping it closes the channel and joins it.
struct Reader {
    jobs: Option<mpsc::SyncSender<ReadJob>>,
    done: mpsc::Receiver<Result<(), String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    /// Starts the thread on `shared` with a framebuffer over each of `colors`, and waits until
    /// it is ready.
    fn start(
        shared: SharedContext,
        colors: Vec<SharedColor>,
        format: Format,
        width_px: u32,
        height_px: u32,
    ) -> Result<Self, GlError> {
        let (jobs, job_queue) = mpsc::sync_channel::<ReadJob>(1);
        let (done_tx, done) = mpsc::sync_channel::<Result<(), String>>(1);
        let thread = std::thread::Builder::new()
            .name("readback".into())
            .spawn(move || {
                let setup = || -> Result<_, GlError> {
                    let context = shared.make_current()?;
                    let framebuffers = colors
                        .iter()
                        .map(|color| {
                            Framebuffer::new(
                                context.gl(),
                                width_px,
                                height_px,
                                &[(glow::COLOR_ATTACHMENT0, Attachment::Shared(*color))],
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((context, framebuffers))
                };
                // The framebuffers go before the context (declaration order is drop order).
                let (framebuffers, context) = match setup() {
                    Ok((context, framebuffers)) => {
                        let _ = done_tx.send(Ok(()));
                        (framebuffers, context)
                    }
                    Err(e) => {
                        let _ = done_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let gl = context.gl();
                let (format, kind) = read_params(format);
                for job in job_queue {
                    let Some(framebuffer) = framebuffers.get(job.target) else {
                        let _ = done_tx.send(Err(format!("no target {}", job.target)));
                        continue;
                    };
                    framebuffer.bind_read();
                    // SAFETY: context current (made so on this thread above; `Gl` checks); no
                    // pixel-pack buffer is ever bound in this context, so the read writes client
                    // memory at `dest`, which the ring lends until this job is answered for a
                    // whole frame (width × height × bytes per pixel, checked by the ring), exactly
                    // what the read writes with pack alignment 1.
                    let read = unsafe {
                        gl.pixel_store_i32(glow::PACK_ALIGNMENT, 1);
                        gl.read_pixels_to(
                            0,
                            0,
                            width_px as i32,
                            height_px as i32,
                            format,
                            kind,
                            job.dest as *mut u8,
                        )
                    };
                    if done_tx.send(read.map_err(|e| e.to_string())).is_err() {
                        break;
                    }
                }
                drop(framebuffers);
                drop(context);
            })
            .map_err(|e| GlError::Readback(format!("cannot start the readback thread: {e}")))?;
        let mut reader = Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        };
        match reader.done.recv() {
            Ok(Ok(())) => Ok(reader),
            Ok(Err(e)) => Err(GlError::Readback(format!("the readback thread: {e}"))),
            Err(_) => {
                reader.stop();
                Err(GlError::Readback(
                    "the readback thread ended before it was ready".into(),
                ))
            }
        }
    }

    fn send(&self, job: ReadJob) -> Result<(), GlError> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| GlError::Readback("the readback thread has ended".into()))
    }

    /// Waits for the answer to the job sent last.
    fn answer(&self) -> Result<(), GlError> {
        match self.done.recv() {
            Ok(result) => result.map_err(|e| GlError::Readback(format!("glReadPixels: {e}"))),
            Err(_) => Err(GlError::Readback("the readback thread has ended".into())),
        }
    }

    fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Readback into lent memory, on a reader thread: once a frame is rasterized, a context of the
/// renderer's share group on its own thread reads it with `glReadPixels` into client memory,
/// straight into a loan, while the renderer's context draws the next frame into the other of
/// two targets. On llvmpipe a read into client memory costs what a read into a pixel-pack buffer
/// does and saves the copy out of the mapping; it is on a context of its own because llvmpipe
/// makes a read wait for everything its own context has queued (the next frame's rendering
/// included) whenever the target read was drawn by a scene not yet recycled. On a GPU the
/// [`PboRing`] stays the default: its reads do not stall the pipeline.
///
/// In flight: one frame at a time ([`LentRing::complete_oldest`] collects it); the caller draws
/// into the target of the frame before the one in flight, never into the one being read.
///
/// Invariants, the [`PboRing`]'s carried over to memory someone else owns:
/// - **Memory a live lease shows is never written.** A slot's holder gets a new loan only when
///   no lease on the slot is alive ([`LentReadSlot::submit`] waits, as [`Slot::submit`] does).
///   And because a lender may lend memory again once it was sent and read, a new loan is
///   compared with the memory every other slot's live leases show: if it is the same, the read
///   waits for those leases to end, which the caller hastens by withdrawing that frame
///   ([`LentReadSlot::leased_frame`]: it was delivered, since its memory came back); where
///   there is no such chance, the loan is set aside (kept, so the lender cannot lend that memory
///   again) until those leases end, and another is taken. Leases only ever come from
///   `complete_oldest`, after the read, so none can appear on memory between that check and the
///   write.
/// - A loan being read into is touched by the reader thread only, until it answers; the ring
///   waits for that answer before it hands the frame out, forgets it, or goes.
/// - A lease keeps the lender, and so the memory, alive ([`Lender`]), and borrows the context
///   like every other lease.
pub struct LentRing<'ctx> {
    /// First, so that it is joined before anything it may be writing into goes.
    reader: Reader,
    gl: Gl,
    lender: Arc<dyn Lender>,
    slots: Vec<LentSlot>,
    /// Loans set aside until no lease shows their memory.
    aside: Vec<SetAside>,
    /// Empty holders for loans set aside.
    spare_holders: Vec<Box<dyn Any + Send>>,
    in_flight: Option<InFlight>,
    /// Where the search for the next free slot starts (round robin).
    next: usize,
    frame_bytes: usize,
    _context: PhantomData<&'ctx HeadlessContext>,
}

/// The slot chosen for the next readback into lent memory ([`LentRing::acquire`]), as [`Slot`]
/// is for a pixel-pack buffer.
pub struct LentReadSlot<'r, 'ctx> {
    ring: &'r mut LentRing<'ctx>,
    index: usize,
    target: usize,
    /// The memory already loaned into the slot's holder (when the slot was free).
    loaned: Option<*mut u8>,
    /// The slot whose leases must end before the read: this one, when it was not free; the
    /// one whose frame shows the memory loaned, when the lender lent that again.
    pinned_by: Option<usize>,
}

impl LentReadSlot<'_, '_> {
    /// The frame whose leases still pin this slot or the memory loaned for it: the caller
    /// withdraws it from whoever hands it out, or [`LentReadSlot::submit`] will wait for its
    /// holders to finish. (A frame whose memory the lender lends again was sent and read
    /// already, so withdrawing it takes nothing from a consumer.)
    pub fn leased_frame(&self) -> Option<FrameMeta> {
        let slot = &self.ring.slots[self.pinned_by?];
        (!slot.leases.is_zero()).then_some(slot.meta)
    }

    /// Waits up to `timeout` for those leases to end; returns whether they have.
    pub fn wait_free(&self, timeout: Duration) -> bool {
        self.pinned_by
            .is_none_or(|pinned| self.ring.slots[pinned].leases.wait_zero(Some(timeout)))
    }

    /// Waits until the frame just drawn into the slot's target is rasterized, loans memory into
    /// this slot (first waiting for the leases that pin it to end) and has the reader thread
    /// read the frame into it; [`LentRing::complete_oldest`] collects it.
    pub fn submit(self, meta: FrameMeta) -> Result<(), GlError> {
        let LentReadSlot {
            ring,
            index,
            target,
            loaned,
            pinned_by,
        } = self;
        // A slot exists only through `acquire`, which refuses while a frame is read, and holds
        // the ring until now.
        debug_assert!(ring.in_flight.is_none());
        if let Some(pinned) = pinned_by {
            ring.slots[pinned].leases.wait_zero(None);
        }
        let ptr = match loaned {
            Some(ptr) => ptr,
            None => ring.lend(index)?,
        };
        // The reader's context sees the target only once this one has finished drawing it.
        let fence = Fence::new(&ring.gl)?;
        while !fence.wait(FENCE_POLL_NS)? {}
        ring.reader.send(ReadJob {
            target,
            dest: ptr as usize,
        })?;
        ring.in_flight = Some(InFlight {
            slot: index,
            ptr,
            meta,
        });
        Ok(())
    }
}

impl<'ctx> LentRing<'ctx> {
    /// A ring of [`LENT_SLOTS`] slots for `format` frames of `width_px` × `height_px`, drawn on
    /// `context` into the targets whose colour images are `colors`, read by a thread of its own
    /// into memory `lender` lends.
    pub fn new(
        context: &'ctx HeadlessContext,
        colors: Vec<SharedColor>,
        width_px: u32,
        height_px: u32,
        format: Format,
        lender: Arc<dyn Lender>,
    ) -> Result<Self, GlError> {
        let frame_bytes = format.frame_bytes(width_px, height_px);
        let frame_bytes = usize::try_from(frame_bytes)
            .ok()
            .filter(|&bytes| i32::try_from(bytes).is_ok())
            .ok_or_else(|| {
                GlError::Readback(format!("a frame of {frame_bytes} bytes is too large"))
            })?;
        let reader = Reader::start(context.share()?, colors, format, width_px, height_px)?;
        let slots = (0..LENT_SLOTS)
            .map(|_| LentSlot {
                leases: Arc::new(LeaseCount {
                    loan: Some(Mutex::new(lender.holder())),
                    _lender: Some(Arc::clone(&lender)),
                    ..LeaseCount::default()
                }),
                ptr: std::ptr::null(),
                meta: FrameMeta::default(),
            })
            .collect();
        let spare_holders = (0..LENT_SLOTS).map(|_| lender.holder()).collect();
        Ok(Self {
            reader,
            gl: context.gl().clone(),
            lender,
            slots,
            aside: Vec::with_capacity(LENT_SLOTS),
            spare_holders,
            in_flight: None,
            next: 0,
            frame_bytes,
            _context: PhantomData,
        })
    }

    /// Picks the slot the frame drawn into target `target` is read into: a free one if there is
    /// one (round robin), else the next in turn, whose leases the caller withdraws or waits for.
    /// A free slot gets its loan at once, so that the caller also withdraws the frame that
    /// shows that memory, if the lender lent it again (see [`LentReadSlot::leased_frame`]).
    /// First returns the loans set aside whose memory no lease shows any more.
    pub fn acquire(&mut self, target: usize) -> Result<LentReadSlot<'_, 'ctx>, GlError> {
        // The slot being read has no leases yet: loaning into it would hand its memory back to
        // the lender while the reader writes it.
        if self.in_flight.is_some() {
            return Err(GlError::Readback(
                "a frame is still being read; complete it first".into(),
            ));
        }
        let mut i = 0;
        while i < self.aside.len() {
            let aside = &self.aside[i];
            let slot = &self.slots[aside.shown_by];
            if slot.ptr != aside.ptr || slot.leases.is_zero() {
                let mut holder = self.aside.swap_remove(i).holder;
                self.lender.clear(&mut *holder);
                self.spare_holders.push(holder);
            } else {
                i += 1;
            }
        }
        let count = self.slots.len();
        let free = (0..count)
            .map(|i| (self.next + i) % count)
            .find(|&i| self.slots[i].leases.is_zero());
        let (index, loaned, pinned_by) = match free {
            Some(index) => {
                let (ptr, shown_by) = self.loan(index)?;
                (index, Some(ptr), shown_by)
            }
            None => (self.next, None, Some(self.next)),
        };
        Ok(LentReadSlot {
            ring: self,
            index,
            target,
            loaned,
            pinned_by,
        })
    }

    /// Loans a frame's memory into slot `index` (whose leases have ended) and says which other
    /// slot's live leases show that memory, if any.
    fn loan(&mut self, index: usize) -> Result<(*mut u8, Option<usize>), GlError> {
        let len = self.frame_bytes;
        let holder = self.slots[index]
            .leases
            .loan
            .as_ref()
            .expect("lent slots hold a loan holder");
        let mut holder = holder.lock().unwrap_or_else(PoisonError::into_inner);
        let memory = self
            .lender
            .lend(&mut **holder, len)
            .map_err(|e| GlError::Readback(format!("cannot loan memory for a frame: {e}")))?;
        if memory.len() < len {
            return Err(GlError::Readback(format!(
                "the lender lent {} bytes for a {len}-byte frame",
                memory.len()
            )));
        }
        let ptr = memory.as_mut_ptr().cast::<u8>();
        let shown_by = (0..self.slots.len()).find(|&other| {
            let slot = &self.slots[other];
            other != index && slot.ptr == ptr.cast_const() && !slot.leases.is_zero()
        });
        Ok((ptr, shown_by))
    }

    /// Loans a frame's memory into slot `index`, whose leases have ended, setting aside every
    /// loan whose memory a live lease shows (for a slot that was not free at `acquire`, when
    /// the loop has nothing left to withdraw).
    fn lend(&mut self, index: usize) -> Result<*mut u8, GlError> {
        loop {
            let (ptr, shown_by) = self.loan(index)?;
            let Some(shown_by) = shown_by else {
                return Ok(ptr);
            };
            // Kept out of the lender's hands until that frame's leases end. At most one loan
            // per other slot is set aside at a time (the lender cannot lend the memory of one
            // that is, and `acquire` returns those whose slot moved on), plus stale ones of
            // this slot: there is always a spare holder.
            let mut spare = self
                .spare_holders
                .pop()
                .ok_or_else(|| GlError::Readback("no holder left for a loan set aside".into()))?;
            let holder = self.slots[index]
                .leases
                .loan
                .as_ref()
                .expect("lent slots hold a loan holder");
            std::mem::swap(
                &mut *holder.lock().unwrap_or_else(PoisonError::into_inner),
                &mut spare,
            );
            self.aside.push(SetAside {
                holder: spare,
                shown_by,
                ptr: ptr.cast_const(),
            });
        }
    }

    /// Waits for the frame in flight to be read and hands it out; `None` when none is.
    pub fn complete_oldest(&mut self) -> Result<Option<FrameLease<'ctx>>, GlError> {
        let Some(InFlight { slot, ptr, meta }) = self.in_flight.take() else {
            return Ok(None);
        };
        self.reader.answer()?;
        let leases = &self.slots[slot].leases;
        if let Some(holder) = &leases.loan {
            let mut holder = holder.lock().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: the reader thread answered the job for this loan without an error:
            // `glReadPixels` into client memory is synchronous, so all `frame_bytes` bytes of the
            // loan are written.
            unsafe { self.lender.filled(&mut **holder) };
        }
        self.next = (slot + 1) % self.slots.len();
        let entry = &mut self.slots[slot];
        entry.ptr = ptr;
        entry.meta = meta;
        entry.leases.add();
        Ok(Some(FrameLease {
            leases: Arc::clone(&entry.leases),
            ptr,
            len: self.frame_bytes,
            meta,
            _context: PhantomData,
        }))
    }

    /// Whether a frame is being read.
    pub fn is_full(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Forgets the frame in flight (once the reader is done with it).
    pub fn discard_in_flight(&mut self) {
        if self.in_flight.take().is_some() {
            let _ = self.reader.answer();
        }
    }
}

#[cfg(test)]
mod tests {
    use glow::HasContext;

    use super::*;
    use crate::gl::objects::{Clear, RenderTarget};

    fn context() -> HeadlessContext {
        HeadlessContext::new(None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn is_buffer(gl: &Gl, raw: glow::Buffer) -> bool {
        // SAFETY: the context is current (`Gl` checks); a query.
        unsafe { gl.is_buffer(raw) }
    }

    /// Reads `target` through `ring` and returns the lease on that frame and its buffer.
    fn read<'ctx>(
        ring: &mut PboRing<'ctx>,
        target: &RenderTarget,
        sequence: u64,
    ) -> (FrameLease<'ctx>, glow::Buffer) {
        let meta = FrameMeta {
            sequence,
            ..FrameMeta::default()
        };
        ring.acquire().unwrap().submit(target, meta).unwrap();
        let lease = ring
            .complete_oldest()
            .unwrap()
            .expect("one frame in flight");
        let slot = ring
            .slots
            .iter()
            .find(|slot| slot.mapped && slot.meta == meta)
            .expect("the leased slot is mapped");
        (lease, slot.buffer.raw())
    }

    #[test]
    fn the_ring_drops_cleanly_with_and_without_leases_outstanding() {
        let context = context();
        let gl = context.gl();
        let target = RenderTarget::new(gl, 4, 4, context.max_target_size()).unwrap();

        // No lease outstanding: every buffer, mapped or not, goes with the ring.
        let mut ring = PboRing::new(&context, 4, 4, Format::Rgba8, 2).unwrap();
        let (lease, _) = read(&mut ring, &target, 1);
        drop(lease);
        let names: Vec<glow::Buffer> = ring.slots.iter().map(|s| s.buffer.raw()).collect();
        drop(ring);
        assert!(names.iter().all(|&name| !is_buffer(gl, name)));
        assert_eq!(gl.deferred_len(), 0);

        // A lease outstanding: its buffer stays mapped and alive after the ring is gone, the
        // lease ends on another thread, and the GL thread deletes the buffer afterwards.
        let mut ring = PboRing::new(&context, 4, 4, Format::Rgba8, 2).unwrap();
        let (lease, leased) = read(&mut ring, &target, 2);
        let pixels = lease.bytes().to_vec();
        assert_eq!(pixels.len(), 4 * 4 * 4);
        drop(ring);
        assert!(is_buffer(gl, leased));
        assert_eq!(gl.deferred_len(), 1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                assert_eq!(lease.bytes(), pixels, "the mapping outlives the ring");
                drop(lease);
            });
        });
        // The lease ended off the GL thread, which therefore has not touched the buffer yet.
        assert!(is_buffer(gl, leased));
        // The next chance the GL thread has (making the context current, or any ring of it
        // acquiring a buffer), it unmaps and deletes it.
        let mut other = PboRing::new(&context, 4, 4, Format::Rgba8, 1).unwrap();
        other.acquire().unwrap();
        assert_eq!(gl.deferred_len(), 0);
        assert!(!is_buffer(gl, leased));
    }

    #[test]
    fn a_retired_buffer_goes_with_its_context_at_the_latest() {
        let context = context();
        let target = RenderTarget::new(context.gl(), 4, 4, context.max_target_size()).unwrap();
        let mut ring = PboRing::new(&context, 4, 4, Format::Rgba8, 1).unwrap();
        let (lease, _) = read(&mut ring, &target, 1);
        drop(ring);
        // The lease must end before the context does (it borrows it); nothing on the GL thread
        // has run since, so the context still holds the buffer when it is destroyed.
        drop(lease);
        drop(target);
        let gl = context.gl().clone();
        assert_eq!(gl.deferred_len(), 1);
        // context, the retired slot's buffer, and `gl`
        assert_eq!(gl.holders(), 3);
        drop(context);
        // Released with the context: nothing left to run, and no cycle (the retired buffer
        // holds the context's shared state) keeps that state alive past its last user.
        assert_eq!(gl.deferred_len(), 0);
        assert_eq!(gl.holders(), 1);
        assert!(!gl.is_current());
    }

    /// Lends plain heap memory, one `Vec` per holder, counting what was marked filled.
    #[derive(Default)]
    struct HeapLender {
        filled: std::sync::atomic::AtomicUsize,
    }

    type Loan = Option<Vec<MaybeUninit<u8>>>;

    impl Lender for HeapLender {
        fn holder(&self) -> Box<dyn Any + Send> {
            Box::new(Loan::None)
        }

        fn lend<'h>(
            &self,
            holder: &'h mut (dyn Any + Send),
            len: usize,
        ) -> Result<&'h mut [MaybeUninit<u8>], String> {
            let loan = holder.downcast_mut::<Loan>().expect("a heap holder");
            Ok(loan.insert(vec![MaybeUninit::uninit(); len]))
        }

        unsafe fn filled(&self, _holder: &mut (dyn Any + Send)) {
            self.filled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        fn clear(&self, holder: &mut (dyn Any + Send)) {
            *holder.downcast_mut::<Loan>().expect("a heap holder") = None;
        }
    }

    /// A ring reading 4×4 RGBA frames of `target` into what `lender` lends.
    fn lent_ring<'ctx>(
        context: &'ctx HeadlessContext,
        target: &RenderTarget,
        lender: Arc<dyn Lender>,
    ) -> LentRing<'ctx> {
        LentRing::new(
            context,
            vec![target.shared_color()],
            4,
            4,
            Format::Rgba8,
            lender,
        )
        .unwrap()
    }

    #[test]
    fn a_lent_slot_is_not_loaned_again_while_its_frame_is_read() {
        let context = context();
        let target = RenderTarget::new(context.gl(), 4, 4, context.max_target_size()).unwrap();
        target.begin(Clear::ColorAndDepth([1.0, 0.0, 0.0, 1.0]));
        let lender = Arc::new(HeapLender::default());
        let mut ring = lent_ring(&context, &target, Arc::clone(&lender) as Arc<dyn Lender>);
        let meta = FrameMeta {
            sequence: 1,
            ..FrameMeta::default()
        };
        ring.acquire(0).unwrap().submit(meta).unwrap();
        // Loaning into the slot being read would give its memory back while the reader writes it.
        let refused = ring
            .acquire(0)
            .err()
            .expect("acquire refused while a read is in flight");
        assert!(
            refused.to_string().contains("still being read"),
            "{refused}"
        );
        let lease = ring
            .complete_oldest()
            .unwrap()
            .expect("one frame in flight");
        assert_eq!(lease.bytes(), [255, 0, 0, 255].repeat(16));
        assert_eq!(lender.filled.load(std::sync::atomic::Ordering::Relaxed), 1);
        drop(lease);
        ring.acquire(0).unwrap().submit(meta).unwrap();
        assert!(ring.complete_oldest().unwrap().is_some());
    }

    #[test]
    fn a_failed_read_into_client_memory_is_an_error() {
        let context = context();
        let target = RenderTarget::new(context.gl(), 4, 4, context.max_target_size()).unwrap();
        target.begin(Clear::ColorAndDepth([0.0, 0.0, 0.0, 1.0]));
        let mut memory = [0u8; 64];
        // SAFETY: context current; no pack buffer bound; `memory` holds a 4×4 RGBA frame. The
        // format 0 is no format, so the driver refuses the read and writes nothing.
        let read = unsafe {
            context
                .gl()
                .read_pixels_to(0, 0, 4, 4, 0, glow::UNSIGNED_BYTE, memory.as_mut_ptr())
        };
        let error = read.expect_err("an invalid read fails").to_string();
        assert!(
            error.contains("glReadPixels failed with GL error 0x05"),
            "{error}"
        );
        // SAFETY: the same, with a valid format.
        unsafe {
            context.gl().read_pixels_to(
                0,
                0,
                4,
                4,
                glow::RGBA,
                glow::UNSIGNED_BYTE,
                memory.as_mut_ptr(),
            )
        }
        .unwrap();
        assert_eq!(memory, [0, 0, 0, 255].repeat(16)[..]);
    }

    /// Lends a small pool of buffers the way iceoryx2 lends samples: a loan's memory goes back
    /// to the pool as soon as it is marked filled (sent, and released by every subscriber at
    /// once: the worst case), so the pool lends it again while leases on that frame live on.
    struct PoolLender {
        buffers: Vec<usize>,
        free: Mutex<VecDeque<usize>>,
        len: usize,
    }

    type PoolLoan = Option<usize>;

    impl PoolLender {
        fn new(count: usize, len: usize) -> Self {
            let buffers = (0..count)
                .map(|_| Box::into_raw(vec![0u8; len].into_boxed_slice()).cast::<u8>() as usize)
                .collect();
            Self {
                buffers,
                free: Mutex::new((0..count).collect()),
                len,
            }
        }

        fn give_back(&self, holder: &mut (dyn Any + Send)) {
            let loan = holder.downcast_mut::<PoolLoan>().expect("a pool holder");
            if let Some(index) = loan.take() {
                self.free.lock().unwrap().push_back(index);
            }
        }
    }

    impl Drop for PoolLender {
        fn drop(&mut self) {
            for &address in &self.buffers {
                let slice = std::ptr::slice_from_raw_parts_mut(address as *mut u8, self.len);
                // SAFETY: made by Box::into_raw in `new` with this length; the ring that wrote
                // into it is gone (it holds the lender) and no lease outlives the test's ring.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }

    impl Lender for PoolLender {
        fn holder(&self) -> Box<dyn Any + Send> {
            Box::new(PoolLoan::None)
        }

        fn lend<'h>(
            &self,
            holder: &'h mut (dyn Any + Send),
            len: usize,
        ) -> Result<&'h mut [MaybeUninit<u8>], String> {
            assert!(len <= self.len);
            self.give_back(holder);
            let index = self.free.lock().unwrap().pop_front().ok_or("pool empty")?;
            *holder.downcast_mut::<PoolLoan>().expect("a pool holder") = Some(index);
            let address = self.buffers[index] as *mut MaybeUninit<u8>;
            // SAFETY: a live buffer of `self.len` bytes, lent to this holder alone until it is
            // given back (the ring reads the leases' bytes only through raw pointers).
            Ok(unsafe { std::slice::from_raw_parts_mut(address, len) })
        }

        unsafe fn filled(&self, holder: &mut (dyn Any + Send)) {
            self.give_back(holder);
        }

        fn clear(&self, holder: &mut (dyn Any + Send)) {
            self.give_back(holder);
        }
    }

    #[test]
    fn memory_lent_again_is_never_written_while_a_lease_shows_it() {
        // The render loop's part: withdraw the frame `leased_frame` names (here: drop every lease
        // on it), then submit. Leases are kept and dropped in a fixed pseudo-random pattern; after
        // every read each live lease must still show its own frame's colour.
        let context = context();
        let target = RenderTarget::new(context.gl(), 4, 4, context.max_target_size()).unwrap();
        let lender = Arc::new(PoolLender::new(5, 64));
        let mut ring = lent_ring(&context, &target, Arc::clone(&lender) as Arc<dyn Lender>);
        let colour = |frame: u64| {
            [
                (frame % 200 + 20) as u8,
                (frame * 7 % 200 + 20) as u8,
                9,
                255,
            ]
        };
        let mut leases: Vec<FrameLease<'_>> = Vec::new();
        let (mut withdrawn, mut random) = (0, 12345u64);
        for frame in 1..=300u64 {
            let [r, g, b, a] = colour(frame).map(|c| f32::from(c) / 255.0);
            target.begin(Clear::ColorAndDepth([r, g, b, a]));
            let slot = ring.acquire(0).unwrap();
            if let Some(pinned) = slot.leased_frame() {
                leases.retain(|lease| lease.meta().sequence != pinned.sequence);
                withdrawn += 1;
            }
            assert!(
                slot.wait_free(Duration::ZERO),
                "frame {frame}: still pinned"
            );
            let meta = FrameMeta {
                sequence: frame,
                ..FrameMeta::default()
            };
            slot.submit(meta).unwrap();
            let lease = ring
                .complete_oldest()
                .unwrap()
                .expect("one frame in flight");
            for _ in 0..frame % 3 {
                leases.push(lease.clone());
            }
            leases.push(lease);
            for lease in &leases {
                let sequence = lease.meta().sequence;
                assert_eq!(
                    lease.bytes(),
                    colour(sequence).repeat(16),
                    "frame {sequence}'s lease, after frame {frame} was read"
                );
            }
            // Drop about a third of the leases, at pseudo-random.
            leases.retain(|_| {
                random = random
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                random >> 62 != 0
            });
        }
        assert!(withdrawn > 0, "the pool never lent memory a lease showed");
    }
}
