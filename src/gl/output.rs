//! The output pass: the GPU step between the scene and the readback that produces the delivered
//! pixel format and orientation, so the CPU never touches a pixel.
//!
//! It draws one full-screen triangle into its own FBO, fetching texels of the scene's colour or
//! depth texture one for one: a copy with rows flipped (`--flip`), a BGRA swizzle, Rec. 709 luma
//! into an R8 target, or depth into an R32F target. Formats the driver can read back directly
//! (RGBA8, RGB8) without flipping skip the pass entirely.

use super::GlError;
use super::context::Gl;
use super::objects::{
    Attachment, Framebuffer, FullscreenPass, ReadSource, RenderTarget, Renderbuffer, SharedColor,
};
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

/// What the output pass makes of each texel of the scene's target. Whether rows are also
/// flipped is separate (`--flip` applies to every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Colour as it is; a pass only when rows are flipped.
    Copy,
    /// Colour with red and blue swapped.
    Bgra,
    /// Rec. 709 luma of the colour, into an R8 target.
    Gray,
    /// The depth texture's window-space depth, into an R32F target.
    Depth,
}

impl OutputMode {
    /// The mode that delivers `format`.
    pub fn for_format(format: Format) -> Self {
        match format {
            Format::Rgba8 | Format::Rgb8 => OutputMode::Copy,
            Format::Bgra8 => OutputMode::Bgra,
            Format::Gray8 => OutputMode::Gray,
            Format::Depth32f => OutputMode::Depth,
        }
    }

    /// The value of `u_mode` that selects this mode in shaders/output.frag; change them
    /// together.
    fn shader_value(self) -> i32 {
        match self {
            OutputMode::Copy => 0,
            OutputMode::Bgra => 1,
            OutputMode::Gray => 2,
            OutputMode::Depth => 3,
        }
    }

    /// The pass target's sized internal format: as many channels as the delivered pixel has.
    fn internal_format(self) -> u32 {
        match self {
            OutputMode::Copy | OutputMode::Bgra => glow::RGBA8,
            OutputMode::Gray => glow::R8,
            OutputMode::Depth => glow::R32F,
        }
    }
}

/// The pass and its target.
pub struct OutputPass {
    pass: FullscreenPass,
    // Field order is drop order: the framebuffer goes before the renderbuffer attached to it.
    framebuffer: Framebuffer,
    _color: Renderbuffer,
}

impl OutputPass {
    /// Builds the pass for `format` and `flip`, or `None` when the scene's target can be read
    /// back as it is.
    pub fn new(
        gl: &Gl,
        glsl_header: &str,
        format: Format,
        flip: bool,
        width_px: u32,
        height_px: u32,
    ) -> Result<Option<Self>, GlError> {
        let mode = OutputMode::for_format(format);
        if mode == OutputMode::Copy && !flip {
            return Ok(None);
        }
        let pass = FullscreenPass::new(
            gl,
            "shaders/output",
            glsl_header,
            include_str!("../../shaders/output.frag"),
        )?;
        let color = Renderbuffer::new(gl, mode.internal_format(), width_px, height_px)?;
        let framebuffer = Framebuffer::new(
            gl,
            width_px,
            height_px,
            &[(glow::COLOR_ATTACHMENT0, Attachment::Renderbuffer(&color))],
        )?;
        // Set once here: nothing else uses this program, and looking uniforms up per frame
        // would allocate.
        let program = pass.program();
        program.bind();
        program.set_i32(&program.uniform("u_color")?, 0);
        program.set_i32(&program.uniform("u_depth")?, 1);
        program.set_i32(&program.uniform("u_mode")?, mode.shader_value());
        program.set_i32(&program.uniform("u_flip")?, i32::from(flip));
        Ok(Some(Self {
            pass,
            framebuffer,
            _color: color,
        }))
    }

    /// The pass's colour target, for a context sharing this one's objects to read.
    pub fn shared_color(&self) -> SharedColor {
        SharedColor::Renderbuffer(self._color.raw())
    }

    /// Converts the current contents of `source` into this pass's target.
    pub fn run(&self, source: &RenderTarget) {
        self.framebuffer.bind_draw();
        source.bind_textures();
        // The uniforms were set once in `new`; nothing else uses this program.
        self.pass.draw();
    }
}

impl ReadSource for OutputPass {
    fn bind_read(&self) {
        self.framebuffer.bind_read();
    }
}

#[cfg(test)]
mod tests {
    use super::OutputMode;
    use crate::format::Format;

    #[test]
    fn every_mode_but_copy_has_its_branch_in_the_shader() {
        let shader = include_str!("../../shaders/output.frag");
        for format in [Format::Bgra8, Format::Gray8, Format::Depth32f] {
            let mode = OutputMode::for_format(format);
            let branch = format!("u_mode == {}", mode.shader_value());
            assert!(shader.contains(&branch), "{mode:?}: no `{branch}`");
        }
        assert_eq!(OutputMode::for_format(Format::Rgba8), OutputMode::Copy);
        assert_eq!(OutputMode::for_format(Format::Rgb8), OutputMode::Copy);
    }
}
