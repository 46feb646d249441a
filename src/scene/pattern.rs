//! The `pattern` scene: the frame index drawn as black and white cells under colour bars, so a
//! receiver can check frame order and detect dropped frames by reading the picture alone
//! ([`crate::pattern_code::decode_pattern`]). The layout lives in [`crate::pattern_code`].
//!
//! The shader works in integer pixels of the render target, so the scene needs its size; it takes
//! it from the target at every frame rather than from the aspect ratio it was built with.

use super::{Scene, SceneError};
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{Clear, FullscreenPass, RenderTarget, Uniform};
use crate::pattern_code::grid_height_px;

/// The pattern scene's GL objects.
pub struct PatternScene {
    pass: FullscreenPass,
    /// Locations of `u_frame`, `u_width_px`, `u_grid_height_px`, looked up once (a lookup by
    /// name allocates in glow).
    frame: Uniform,
    width_px: Uniform,
    grid_height_px: Uniform,
}

impl PatternScene {
    /// Compiles the pattern shader.
    pub fn new(context: &HeadlessContext) -> Result<Self, SceneError> {
        let pass = FullscreenPass::new(
            context.gl(),
            "shaders/pattern",
            context.glsl_header(),
            include_str!("../../shaders/pattern.frag"),
        )?;
        let program = pass.program();
        Ok(Self {
            frame: program.uniform("u_frame")?,
            width_px: program.uniform("u_width_px")?,
            grid_height_px: program.uniform("u_grid_height_px")?,
            pass,
        })
    }
}

impl Scene for PatternScene {
    fn apply(&mut self, settings: &crate::control::Settings) -> Result<(), String> {
        super::refuse_unsupported("pattern", settings, false, false, false)
    }

    fn render(&mut self, frame_index: u64, target: &RenderTarget) {
        target.begin(Clear::Nothing);
        let program = self.pass.program();
        program.bind();
        // The pattern carries the index modulo 2^32; the truncation is the documented wrap.
        program.set_u32(&self.frame, frame_index as u32);
        program.set_i32(&self.width_px, target.width_px() as i32);
        program.set_i32(
            &self.grid_height_px,
            grid_height_px(target.height_px()) as i32,
        );
        self.pass.draw();
    }
}
