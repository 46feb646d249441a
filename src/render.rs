//! The render pipeline every job shares: headless context, scene, render target, PBO ring.
//!
//! `serve`, `snapshot` and `bench` all draw frame N the same way through the same ring, which is
//! what makes a streamed frame and a snapshot of the same index byte-identical. A stream whose
//! one consumer lends the memory frames go into (shared memory, see [`Renderer::read_into`])
//! reads back into that memory instead: the same `glReadPixels` of the same target, so the same
//! bytes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::format::{Format, FrameShape};
use crate::gl::GlError;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{Fence, ReadSource, RenderTarget, SharedColor};
use crate::gl::output::OutputPass;
use crate::gl::readback::{FrameLease, FrameMeta, Lender, LentReadSlot, LentRing, PboRing, Slot};
use crate::scene::{self, Scene, SceneOptions};

/// What a pipeline is built from.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// EGL device index, if chosen.
    pub device: Option<usize>,
    /// Frame width in pixels.
    pub width_px: u32,
    /// Frame height in pixels.
    pub height_px: u32,
    /// Pixel-pack buffers in the ring.
    pub pbo_count: usize,
    /// Pixel format of the delivered frames.
    pub format: Format,
    /// Rows top-down (flipped on the GPU) instead of OpenGL's bottom-up.
    pub flip: bool,
    /// The scene and its options.
    pub scene: SceneOptions,
}

impl RenderOptions {
    /// What every frame this pipeline delivers looks like.
    pub fn shape(&self) -> FrameShape {
        FrameShape {
            width_px: self.width_px,
            height_px: self.height_px,
            format: self.format,
            top_down: self.flip,
        }
    }
}

/// A ready pipeline on a context the caller owns. The ring's leases borrow that context, so
/// the context outlives every frame handed out (see [`crate::gl::readback`]). Fields drop in
/// declaration order.
pub struct Renderer<'ctx> {
    /// The readback ring.
    pub ring: PboRing<'ctx>,
    /// Readback into lent memory, when a consumer lends it ([`Renderer::read_into`]): then the
    /// ring is not used.
    lent: Option<LentRing<'ctx>>,
    scene: Box<dyn Scene>,
    /// Where frames are drawn: one, or two in turn when reading into lent memory (so that the
    /// previous frame is read while this one is rasterized).
    targets: Vec<DrawTarget>,
    /// The target the newest frame was drawn into.
    drawn: usize,
    options: RenderOptions,
    context: &'ctx HeadlessContext,
}

/// One place a frame is drawn: the scene's target and, when the format or the row order needs
/// one, the output pass that converts it (which is then what is read back).
struct DrawTarget {
    output: Option<OutputPass>,
    target: RenderTarget,
}

impl DrawTarget {
    fn new(context: &HeadlessContext, options: &RenderOptions) -> Result<Self, GlError> {
        let gl = context.gl();
        let target = RenderTarget::new(
            gl,
            options.width_px,
            options.height_px,
            context.max_target_size(),
        )?;
        let output = OutputPass::new(
            gl,
            context.glsl_header(),
            options.format,
            options.flip,
            options.width_px,
            options.height_px,
        )?;
        Ok(Self { output, target })
    }

    /// Its colour image, for the reader thread's context.
    fn shared_color(&self) -> SharedColor {
        match &self.output {
            Some(output) => output.shared_color(),
            None => self.target.shared_color(),
        }
    }

    /// What the frame drawn here is read back from.
    fn source(&self) -> &dyn ReadSource {
        match &self.output {
            Some(output) => output,
            None => &self.target,
        }
    }
}

/// Creates the headless context a [`Renderer`] draws on (device from `options`) and logs
/// GL_VERSION and GL_RENDERER.
pub fn context(options: &RenderOptions) -> Result<HeadlessContext> {
    let context = HeadlessContext::new(options.device)?;
    let info = context.info();
    log::debug!("GL_VENDOR {}", info.vendor);
    log::info!(
        "GL_VERSION {} | GL_RENDERER {} (EGL device {}{})",
        info.version,
        info.renderer,
        info.device_index,
        if info.software { ", software" } else { "" }
    );
    Ok(context)
}

impl<'ctx> Renderer<'ctx> {
    /// Builds the scene, render target, output pass and ring on `context`.
    pub fn new(context: &'ctx HeadlessContext, options: &RenderOptions) -> Result<Self> {
        let target = DrawTarget::new(context, options)?;
        let aspect = options.width_px as f32 / options.height_px as f32;
        let scene = scene::build(context, &options.scene, aspect).context("building the scene")?;
        let ring = PboRing::new(
            context,
            options.width_px,
            options.height_px,
            options.format,
            options.pbo_count,
        )?;
        Ok(Self {
            ring,
            lent: None,
            scene,
            targets: vec![target],
            drawn: 0,
            options: options.clone(),
            context,
        })
    }

    /// Applies a control request's settings to the scene: all or none (see `Scene::apply`).
    pub fn apply(&mut self, settings: &crate::control::Settings) -> Result<(), String> {
        self.scene.apply(settings)
    }

    /// Draws frame `frame_index` into the render target (and through the output pass). When
    /// reading into lent memory, into the other target than the last frame's, so that the
    /// reader thread reads that one while this one is drawn.
    pub fn render(&mut self, frame_index: u64) {
        if self.lent.is_some() {
            self.drawn = (self.drawn + 1) % self.targets.len();
        }
        let drawn = &self.targets[self.drawn];
        self.scene.render(frame_index, &drawn.target);
        if let Some(output) = &drawn.output {
            output.run(&drawn.target);
        }
    }

    /// From now on reads every frame straight into memory `lender` lends (synchronously, see
    /// [`LentRing`]) instead of through the PBO ring, whose frames must all be handed out by now.
    pub fn read_into(&mut self, lender: Arc<dyn Lender>) -> Result<(), GlError> {
        if self.targets.len() < 2 {
            self.targets
                .push(DrawTarget::new(self.context, &self.options)?);
        }
        let ring = &self.ring;
        match LentRing::new(
            self.context,
            self.targets.iter().map(DrawTarget::shared_color).collect(),
            ring.width_px(),
            ring.height_px(),
            ring.format(),
            lender,
        ) {
            Ok(lent) => {
                self.lent = Some(lent);
                Ok(())
            }
            Err(e) => {
                // Reading through the ring, one target is drawn into.
                self.targets.truncate(1);
                Err(e)
            }
        }
    }

    /// Reads through the PBO ring again, letting go of the lender (frames read into its memory
    /// keep it alive for as long as they live).
    pub fn read_through_ring(&mut self) {
        self.lent = None;
        self.drawn = 0;
    }

    /// Where the frame just rendered goes, and where to read it from: submit the one from the
    /// other ([`ReadSlot::submit`]) once the slot is free.
    pub fn acquire(&mut self) -> Result<(ReadSlot<'_, 'ctx>, &dyn ReadSource), GlError> {
        let drawn = &self.targets[self.drawn];
        match &mut self.lent {
            Some(lent) => Ok((ReadSlot::Lent(lent.acquire(self.drawn)?), drawn.source())),
            None => Ok((ReadSlot::Pbo(self.ring.acquire()?), drawn.source())),
        }
    }

    /// Starts the readback of the frame just rendered, waiting for the buffer if a lease still
    /// pins it (for callers whose leases are all their own: snapshots, the bench).
    pub fn submit(&mut self, meta: FrameMeta) -> Result<(), GlError> {
        let (slot, source) = self.acquire()?;
        slot.submit(source, meta)
    }

    /// Waits for the oldest frame in flight and hands it out; `None` when none is.
    pub fn complete_oldest(&mut self) -> Result<Option<FrameLease<'ctx>>, GlError> {
        match &mut self.lent {
            Some(lent) => lent.complete_oldest(),
            None => self.ring.complete_oldest(),
        }
    }

    /// Whether as many frames are in flight as may be: complete one before the next submit.
    pub fn is_full(&self) -> bool {
        match &self.lent {
            Some(lent) => lent.is_full(),
            None => self.ring.is_full(),
        }
    }

    /// Forgets every frame in flight (the stream went idle; nobody will want them).
    pub fn discard_in_flight(&mut self) {
        match &mut self.lent {
            Some(lent) => lent.discard_in_flight(),
            None => self.ring.discard_in_flight(),
        }
    }

    /// Whether frames are read into lent memory ([`Renderer::read_into`]).
    pub fn reads_lent(&self) -> bool {
        self.lent.is_some()
    }

    /// Whether the loop should publish frame N − 1 once frame N is rasterized rather than once
    /// the ring is full: on a software rasterizer with frames in flight (see the loop), and
    /// always when reading into lent memory, where a frame's read overlaps the next's drawing.
    pub fn publishes_early(&self) -> bool {
        self.lent.is_some() || (self.is_software() && self.ring.capacity() > 1)
    }

    /// Whether the context is a software rasterizer (llvmpipe), which renders on the CPU cores
    /// the rest of the process uses.
    pub fn is_software(&self) -> bool {
        self.context.info().software
    }

    /// Blocks until every frame drawn so far has been rasterized.
    pub fn wait_rendered(&self) -> Result<(), GlError> {
        let fence = Fence::new(self.context.gl())?;
        // The wait as a whole has no limit: a render always completes unless the driver is lost.
        while !fence.wait(100_000_000)? {}
        Ok(())
    }

    /// The context's GL strings (GL_RENDERER names the driver in bench reports).
    pub fn context_info(&self) -> &crate::gl::context::ContextInfo {
        self.context.info()
    }

    /// Starts the driver on the commands issued so far without waiting for them (`glFlush`).
    pub fn flush(&self) {
        crate::gl::objects::flush(self.context.gl());
    }

    /// Blocks until every GL command issued so far has executed (`glFinish`), so a render-only
    /// timing measures the rasterizer and not just the command submission.
    pub fn finish(&self) {
        crate::gl::objects::finish(self.context.gl());
    }

    /// Renders every frame index in `frames` through the ring and hands each finished frame to
    /// `each`, in order. The lease must be dropped before `each` returns for k = 1 to progress,
    /// which holds because `each` only borrows it.
    pub fn render_range(
        &mut self,
        frames: impl IntoIterator<Item = u64>,
        mut each: impl FnMut(&FrameLease<'ctx>) -> Result<()>,
    ) -> Result<()> {
        for frame_index in frames {
            self.render(frame_index);
            self.submit(FrameMeta {
                sequence: frame_index,
                frame_index,
                timestamp_ns: 0,
                request_id: 0,
            })?;
            if self.is_full()
                && let Some(lease) = self.complete_oldest()?
            {
                each(&lease)?;
            }
        }
        while let Some(lease) = self.complete_oldest()? {
            each(&lease)?;
        }
        Ok(())
    }
}

/// The slot the next frame is read into: a pixel-pack buffer of the ring, or a slot of lent
/// memory. Both keep the same rule: written only once no lease on it is alive.
pub enum ReadSlot<'r, 'ctx> {
    /// A buffer of the PBO ring.
    Pbo(Slot<'r, 'ctx>),
    /// A slot of lent memory.
    Lent(LentReadSlot<'r, 'ctx>),
}

impl ReadSlot<'_, '_> {
    /// The frame whose leases still pin this slot: withdraw it from whoever hands it out, or
    /// [`ReadSlot::submit`] will wait for its holders to finish.
    pub fn leased_frame(&self) -> Option<FrameMeta> {
        match self {
            ReadSlot::Pbo(slot) => slot.leased_frame(),
            ReadSlot::Lent(slot) => slot.leased_frame(),
        }
    }

    /// Waits up to `timeout` for every lease on this slot to end; returns whether it is free.
    pub fn wait_free(&self, timeout: Duration) -> bool {
        match self {
            ReadSlot::Pbo(slot) => slot.wait_free(timeout),
            ReadSlot::Lent(slot) => slot.wait_free(timeout),
        }
    }

    /// Reads the current contents of `source` into this slot, first waiting for any lease on it
    /// to end.
    pub fn submit(self, source: &dyn ReadSource, meta: FrameMeta) -> Result<(), GlError> {
        match self {
            ReadSlot::Pbo(slot) => slot.submit(source, meta),
            ReadSlot::Lent(slot) => slot.submit(meta),
        }
    }
}
