//! The vertical gradient the cube and glTF scenes are drawn over: one full-screen triangle with
//! depth test and culling off, so it writes no depth and the scene in front of it is untouched.

use std::rc::Rc;

use glam::Vec3;

use super::SceneError;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{EmptyVertexArray, Program, Uniform, set_cull_back_faces, set_depth_test};

/// A gradient from `bottom` to `top`.
pub struct Backdrop {
    gl: Rc<glow::Context>,
    program: Program,
    triangle: EmptyVertexArray,
    bottom_uniform: Uniform,
    top_uniform: Uniform,
    bottom: Vec3,
    top: Vec3,
}

impl Backdrop {
    /// Compiles the gradient shader for the given colours.
    pub fn new(context: &HeadlessContext, bottom: Vec3, top: Vec3) -> Result<Self, SceneError> {
        let gl = context.gl();
        let program = Program::new(
            gl,
            "shaders/background",
            context.glsl_header(),
            include_str!("../../shaders/background.vert"),
            include_str!("../../shaders/background.frag"),
        )?;
        Ok(Self {
            gl: Rc::clone(gl),
            bottom_uniform: program.uniform("u_bottom")?,
            top_uniform: program.uniform("u_top")?,
            program,
            triangle: EmptyVertexArray::new(gl)?,
            bottom,
            top,
        })
    }

    /// Draws the gradient over the whole (bound) target; leaves depth test and culling off.
    pub fn draw(&self) {
        set_depth_test(&self.gl, false);
        set_cull_back_faces(&self.gl, false);
        self.program.bind();
        self.program.set_vec3(&self.bottom_uniform, self.bottom);
        self.program.set_vec3(&self.top_uniform, self.top);
        self.triangle.draw(3);
    }
}
