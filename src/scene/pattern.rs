//! The `pattern` scene: the frame index drawn as black and white cells under colour bars, so a
//! receiver can check frame order and detect dropped frames by reading the picture alone
//! ([`super::decode_pattern`]). The layout lives in [`super::pattern_code`].
//!
//! The shader works in integer pixels of the render target, so the scene needs its size; it takes
//! it from the target at every frame rather than from the aspect ratio it was built with.

use super::pattern_code::grid_height_px;
use super::{Scene, SceneError};
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{
    EmptyVertexArray, Program, RenderTarget, Uniform, set_cull_back_faces, set_depth_test,
};

/// The pattern scene's GL objects.
pub struct PatternScene {
    gl: std::rc::Rc<glow::Context>,
    program: Program,
    fullscreen: EmptyVertexArray,
    /// Locations of `u_frame`, `u_width_px`, `u_grid_height_px`, looked up once (a lookup by
    /// name allocates in glow).
    frame: Uniform,
    width_px: Uniform,
    grid_height_px: Uniform,
}

impl PatternScene {
    /// Compiles the pattern shader.
    pub fn new(context: &HeadlessContext) -> Result<Self, SceneError> {
        let gl = context.gl();
        let program = Program::new(
            gl,
            "shaders/pattern",
            context.glsl_header(),
            include_str!("../../shaders/background.vert"),
            include_str!("../../shaders/pattern.frag"),
        )?;
        Ok(Self {
            gl: std::rc::Rc::clone(gl),
            frame: program.uniform("u_frame")?,
            width_px: program.uniform("u_width_px")?,
            grid_height_px: program.uniform("u_grid_height_px")?,
            program,
            fullscreen: EmptyVertexArray::new(gl)?,
        })
    }
}

impl Scene for PatternScene {
    fn render(&mut self, frame_index: u64, target: &RenderTarget) {
        target.begin([0.0, 0.0, 0.0, 1.0]);
        set_depth_test(&self.gl, false);
        set_cull_back_faces(&self.gl, false);
        self.program.bind();
        // The pattern carries the index modulo 2^32; the truncation is the documented wrap.
        self.program.set_u32(&self.frame, frame_index as u32);
        self.program
            .set_i32(&self.width_px, target.width_px() as i32);
        self.program.set_i32(
            &self.grid_height_px,
            grid_height_px(target.height_px()) as i32,
        );
        self.fullscreen.draw(3);
    }
}
