//! The render pipeline every job shares: headless context, scene, render target, PBO ring.
//!
//! `serve`, `snapshot` and `bench` all draw frame N the same way through the same ring, which is
//! what makes a streamed frame and a snapshot of the same index byte-identical.

use anyhow::{Context, Result};

use crate::format::{Format, FrameShape};
use crate::gl::GlError;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{Fence, ReadSource, RenderTarget};
use crate::gl::output::OutputPass;
use crate::gl::readback::{FrameLease, FrameMeta, PboRing, Slot};
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
    output: Option<OutputPass>,
    scene: Box<dyn Scene>,
    /// The FBO frames are drawn into.
    pub target: RenderTarget,
    context: &'ctx HeadlessContext,
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
        let gl = context.gl();
        let target = RenderTarget::new(
            gl,
            options.width_px,
            options.height_px,
            context.max_target_size(),
        )?;
        let aspect = options.width_px as f32 / options.height_px as f32;
        let scene = scene::build(context, &options.scene, aspect).context("building the scene")?;
        let output = OutputPass::new(
            gl,
            context.glsl_header(),
            options.format,
            options.flip,
            options.width_px,
            options.height_px,
        )?;
        let ring = PboRing::new(
            context,
            options.width_px,
            options.height_px,
            options.format,
            options.pbo_count,
        )?;
        Ok(Self {
            ring,
            output,
            scene,
            target,
            context,
        })
    }

    /// Applies a control request's settings to the scene: all or none (see `Scene::apply`).
    pub fn apply(&mut self, settings: &crate::control::Settings) -> Result<(), String> {
        self.scene.apply(settings)
    }

    /// Draws frame `frame_index` into the render target (and through the output pass).
    pub fn render(&mut self, frame_index: u64) {
        self.scene.render(frame_index, &self.target);
        if let Some(output) = &self.output {
            output.run(&self.target);
        }
    }

    /// The buffer the frame just rendered goes into, and where to read it from: submit the one
    /// from the other ([`Slot::submit`]) once the slot is free.
    pub fn acquire(&mut self) -> Result<(Slot<'_, 'ctx>, &dyn ReadSource), GlError> {
        let source: &dyn ReadSource = match &self.output {
            Some(output) => output,
            None => &self.target,
        };
        Ok((self.ring.acquire()?, source))
    }

    /// Starts the readback of the frame just rendered, waiting for the buffer if a lease still
    /// pins it (for callers whose leases are all their own: snapshots, the bench).
    pub fn submit(&mut self, meta: FrameMeta) -> Result<(), GlError> {
        let (slot, source) = self.acquire()?;
        slot.submit(source, meta)
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
            if self.ring.is_full()
                && let Some(lease) = self.ring.complete_oldest()?
            {
                each(&lease)?;
            }
        }
        while let Some(lease) = self.ring.complete_oldest()? {
            each(&lease)?;
        }
        Ok(())
    }
}
