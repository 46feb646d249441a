//! The vertical gradient the cube and glTF scenes are drawn over: one full-screen triangle with
//! depth test and culling off, so it writes no depth and the scene in front of it is untouched.

use glam::Vec3;

use super::SceneError;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{FullscreenPass, Uniform};

/// A gradient from `bottom` to `top`.
pub struct Backdrop {
    pass: FullscreenPass,
    bottom_uniform: Uniform,
    top_uniform: Uniform,
    bottom: Vec3,
    top: Vec3,
}

impl Backdrop {
    /// Compiles the gradient shader for the given colours.
    pub fn new(context: &HeadlessContext, bottom: Vec3, top: Vec3) -> Result<Self, SceneError> {
        let pass = FullscreenPass::new(
            context.gl(),
            "shaders/background",
            context.glsl_header(),
            include_str!("../../shaders/background.frag"),
        )?;
        Ok(Self {
            bottom_uniform: pass.program().uniform("u_bottom")?,
            top_uniform: pass.program().uniform("u_top")?,
            pass,
            bottom,
            top,
        })
    }

    /// Draws the gradient over the whole (bound) target; leaves depth test and culling off.
    pub fn draw(&self) {
        let program = self.pass.program();
        program.bind();
        program.set_vec3(&self.bottom_uniform, self.bottom);
        program.set_vec3(&self.top_uniform, self.top);
        self.pass.draw();
    }
}
