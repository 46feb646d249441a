//! The output pass: the GPU step between the scene and the readback that produces the delivered
//! pixel format and orientation, so the CPU never touches a pixel.
//!
//! It draws one full-screen triangle into its own FBO, fetching texels of the scene's colour or
//! depth texture one for one: a copy with rows flipped (`--flip`), a BGRA swizzle, Rec. 709 luma
//! into an R8 target, or depth into an R32F target. Formats the driver can read back directly
//! (RGBA8, RGB8) without flipping skip the pass entirely.

use std::rc::Rc;

use glow::HasContext;

use super::GlError;
use super::objects::{EmptyVertexArray, Program, ReadSource, RenderTarget};
use crate::format::Format;

/// `glReadPixels` format and type for each delivered format (after the output pass, if any).
pub fn read_params(format: Format) -> (u32, u32) {
    match format {
        // BGRA is swizzled by the output pass, so it reads back as RGBA bytes.
        Format::Rgba8 | Format::Bgra8 => (glow::RGBA, glow::UNSIGNED_BYTE),
        Format::Rgb8 => (glow::RGB, glow::UNSIGNED_BYTE),
        Format::Gray8 => (glow::RED, glow::UNSIGNED_BYTE),
        Format::Depth32f => (glow::RED, glow::FLOAT),
    }
}

/// The pass and its target.
pub struct OutputPass {
    gl: Rc<glow::Context>,
    program: Program,
    triangle: EmptyVertexArray,
    fbo: glow::Framebuffer,
    color: glow::Renderbuffer,
    width_px: u32,
    height_px: u32,
    mode: i32,
    flip: bool,
}

impl OutputPass {
    /// Builds the pass for `format` and `flip`, or `None` when the scene's target can be read
    /// back as it is.
    pub fn new(
        gl: &Rc<glow::Context>,
        glsl_header: &str,
        format: Format,
        flip: bool,
        width_px: u32,
        height_px: u32,
    ) -> Result<Option<Self>, GlError> {
        let (mode, internal) = match format {
            Format::Rgba8 | Format::Rgb8 if !flip => return Ok(None),
            Format::Rgba8 | Format::Rgb8 => (0, glow::RGBA8),
            Format::Bgra8 => (1, glow::RGBA8),
            Format::Gray8 => (2, glow::R8),
            Format::Depth32f => (3, glow::R32F),
        };
        let program = Program::new(
            gl,
            "shaders/output",
            glsl_header,
            include_str!("../../shaders/background.vert"),
            include_str!("../../shaders/output.frag"),
        )?;
        let triangle = EmptyVertexArray::new(gl)?;
        // SAFETY: context current (the `Rc` pins us to the GL thread); the handles are owned by
        // the returned value and deleted in `Drop`, also on the incomplete path.
        unsafe {
            let fbo = gl.create_framebuffer().map_err(|message| GlError::Create {
                what: "framebuffer",
                message,
            })?;
            let color = gl
                .create_renderbuffer()
                .map_err(|message| GlError::Create {
                    what: "renderbuffer",
                    message,
                })?;
            let pass = Self {
                gl: Rc::clone(gl),
                program,
                triangle,
                fbo,
                color,
                width_px,
                height_px,
                mode,
                flip,
            };
            gl.bind_framebuffer(glow::FRAMEBUFFER, Some(fbo));
            gl.bind_renderbuffer(glow::RENDERBUFFER, Some(color));
            gl.renderbuffer_storage(
                glow::RENDERBUFFER,
                internal,
                width_px as i32,
                height_px as i32,
            );
            gl.framebuffer_renderbuffer(
                glow::FRAMEBUFFER,
                glow::COLOR_ATTACHMENT0,
                glow::RENDERBUFFER,
                Some(color),
            );
            gl.bind_renderbuffer(glow::RENDERBUFFER, None);
            let status = gl.check_framebuffer_status(glow::FRAMEBUFFER);
            if status != glow::FRAMEBUFFER_COMPLETE {
                return Err(GlError::Framebuffer(status));
            }
            // Set once here: nothing else uses this program, and looking uniforms up per frame
            // would allocate.
            let program = &pass.program;
            program.bind();
            program.set_i32(&program.uniform("u_color")?, 0);
            program.set_i32(&program.uniform("u_depth")?, 1);
            program.set_i32(&program.uniform("u_mode")?, pass.mode);
            program.set_i32(&program.uniform("u_flip")?, i32::from(pass.flip));
            Ok(Some(pass))
        }
    }

    /// Converts the current contents of `source` into this pass's target.
    pub fn run(&self, source: &RenderTarget) {
        // SAFETY: context current; the framebuffer is alive and complete (checked in `new`).
        unsafe {
            self.gl.bind_framebuffer(glow::FRAMEBUFFER, Some(self.fbo));
            self.gl
                .viewport(0, 0, self.width_px as i32, self.height_px as i32);
            self.gl.disable(glow::DEPTH_TEST);
            self.gl.disable(glow::CULL_FACE);
            self.gl.disable(glow::BLEND);
        }
        source.bind_textures();
        // The uniforms were set once in `new`; nothing else uses this program.
        self.program.bind();
        self.triangle.draw(3);
    }
}

impl ReadSource for OutputPass {
    fn bind_read(&self) {
        // SAFETY: context current; the framebuffer is alive.
        unsafe {
            self.gl
                .bind_framebuffer(glow::READ_FRAMEBUFFER, Some(self.fbo));
            self.gl.read_buffer(glow::COLOR_ATTACHMENT0);
        }
    }
}

impl Drop for OutputPass {
    fn drop(&mut self) {
        // SAFETY: we own both handles.
        unsafe {
            self.gl.delete_framebuffer(self.fbo);
            self.gl.delete_renderbuffer(self.color);
        }
    }
}
