//! GL objects that own their handle and delete it in `Drop`, and the few safe operations the
//! scenes need on them.
//!
//! glow's handles are `Copy` and have no `Drop`, so a bare handle in a struct is a leak. Each type
//! here keeps the `Rc<glow::Context>` it was created with, which both lets it delete itself and
//! pins it to the GL thread (`Rc` is `!Send`). Every method assumes that context is current on the
//! calling thread, which holds because the only way to get a context is
//! [`super::context::HeadlessContext`], and it never leaves the thread that made it current.

use std::rc::Rc;

use glam::{Mat4, Vec3, Vec4};
use glow::HasContext;

use super::GlError;

fn create_error(what: &'static str) -> impl FnOnce(String) -> GlError {
    move |message| GlError::Create { what, message }
}

/// Shortens a driver's info log to its error lines, so a failing shader gives a short message
/// that still carries the driver's line numbers.
fn short_log(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    let chosen = if errors.is_empty() { lines } else { errors };
    chosen.join("; ")
}

/// A linked shader program; its uniforms are set through [`Uniform`] locations looked up once.
pub struct Program {
    gl: Rc<glow::Context>,
    raw: glow::Program,
}

impl Program {
    /// Compiles and links a program. `header` is the `#version` prologue for the context's
    /// dialect; `name` appears in errors.
    pub fn new(
        gl: &Rc<glow::Context>,
        name: &str,
        header: &str,
        vertex: &str,
        fragment: &str,
    ) -> Result<Self, GlError> {
        // SAFETY: context current on this thread (module invariant); shaders are deleted on
        // every path, the program on every error path and otherwise by `Drop`.
        unsafe {
            let raw = gl.create_program().map_err(create_error("program"))?;
            let program = Self {
                gl: Rc::clone(gl),
                raw,
            };
            let mut shaders = Vec::new();
            let mut result = Ok(());
            for (stage, kind, source) in [
                ("vertex", glow::VERTEX_SHADER, vertex),
                ("fragment", glow::FRAGMENT_SHADER, fragment),
            ] {
                let shader = gl.create_shader(kind).map_err(create_error("shader"))?;
                // The header is one line per `\n`, and drivers count lines from the first
                // source string; `#line 1` makes the log's line numbers those of the file.
                let full = format!("{header}#line 1\n{source}");
                gl.shader_source(shader, &full);
                gl.compile_shader(shader);
                shaders.push(shader);
                if !gl.get_shader_compile_status(shader) {
                    result = Err(GlError::Compile {
                        name: name.to_string(),
                        stage,
                        log: short_log(&gl.get_shader_info_log(shader)),
                    });
                    break;
                }
                gl.attach_shader(raw, shader);
            }
            if result.is_ok() {
                gl.link_program(raw);
                if !gl.get_program_link_status(raw) {
                    result = Err(GlError::Link {
                        name: name.to_string(),
                        log: short_log(&gl.get_program_info_log(raw)),
                    });
                }
            }
            for shader in shaders {
                gl.detach_shader(raw, shader);
                gl.delete_shader(shader);
            }
            result.map(|()| program)
        }
    }

    /// Makes this the current program.
    pub fn bind(&self) {
        // SAFETY: context current (module invariant); the program is alive while `self` is.
        unsafe { self.gl.use_program(Some(self.raw)) }
    }

    /// Looks up a uniform once, so the per-frame setters need no name lookup: glow's
    /// `get_uniform_location` builds a `CString` on every call, which would allocate per frame.
    /// A uniform the compiler removed (or never declared) gives a location that sets nothing.
    pub fn uniform(&self, name: &str) -> Uniform {
        // SAFETY: context current (module invariant); the program is alive and linked.
        Uniform(unsafe { self.gl.get_uniform_location(self.raw, name) })
    }

    /// Sets a `mat4` uniform on this (bound) program.
    pub fn set_mat4(&self, uniform: &Uniform, value: &Mat4) {
        // SAFETY: context current; the slice is 16 floats, as a mat4 needs.
        unsafe {
            self.gl
                .uniform_matrix_4_f32_slice(uniform.0.as_ref(), false, &value.to_cols_array())
        }
    }

    /// Sets a `vec3` uniform on this (bound) program.
    pub fn set_vec3(&self, uniform: &Uniform, value: Vec3) {
        // SAFETY: context current (module invariant).
        unsafe {
            self.gl
                .uniform_3_f32(uniform.0.as_ref(), value.x, value.y, value.z)
        }
    }

    /// Sets an `int` (or sampler) uniform on this (bound) program.
    pub fn set_i32(&self, uniform: &Uniform, value: i32) {
        // SAFETY: context current (module invariant).
        unsafe { self.gl.uniform_1_i32(uniform.0.as_ref(), value) }
    }

    /// Sets a `uint` uniform on this (bound) program.
    pub fn set_u32(&self, uniform: &Uniform, value: u32) {
        // SAFETY: context current (module invariant).
        unsafe { self.gl.uniform_1_u32(uniform.0.as_ref(), value) }
    }

    /// Sets a `float` uniform on this (bound) program.
    pub fn set_f32(&self, uniform: &Uniform, value: f32) {
        // SAFETY: context current (module invariant).
        unsafe { self.gl.uniform_1_f32(uniform.0.as_ref(), value) }
    }

    /// Sets a `vec4` uniform on this (bound) program.
    pub fn set_vec4(&self, uniform: &Uniform, value: Vec4) {
        // SAFETY: context current (module invariant).
        unsafe {
            self.gl
                .uniform_4_f32(uniform.0.as_ref(), value.x, value.y, value.z, value.w)
        }
    }
}

/// A uniform's location in one [`Program`], looked up once with [`Program::uniform`]. Use it
/// only with the program that made it: a location means nothing in another program.
#[derive(Debug, Clone)]
pub struct Uniform(Option<glow::UniformLocation>);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: we own the handle; nothing else deletes it.
        unsafe { self.gl.delete_program(self.raw) }
    }
}

/// An immutable RGBA8 2D texture with mipmaps, sampled with trilinear filtering and repeat.
pub struct Texture {
    gl: Rc<glow::Context>,
    raw: glow::Texture,
}

impl Texture {
    /// The largest width or height a texture may have on this driver (GL_MAX_TEXTURE_SIZE), for
    /// refusing an image from its header before it is decoded.
    pub fn max_side_px(gl: &glow::Context) -> u32 {
        // SAFETY: context current; an integer query.
        unsafe { gl.get_parameter_i32(glow::MAX_TEXTURE_SIZE) }.max(0) as u32
    }

    /// Uploads `pixels` (`width * height * 4` bytes, rows bottom-up as GL expects).
    pub fn from_rgba8(
        gl: &Rc<glow::Context>,
        width: u32,
        height: u32,
        pixels: &[u8],
    ) -> Result<Self, GlError> {
        assert_eq!(pixels.len(), width as usize * height as usize * 4);
        let max = Self::max_side_px(gl);
        if width > max || height > max {
            return Err(GlError::TextureTooLarge { width, height, max });
        }
        // SAFETY: context current; `pixels` holds exactly width*height RGBA8 texels (asserted)
        // and the unpack alignment is set to 1 so no row padding is read.
        unsafe {
            let raw = gl.create_texture().map_err(create_error("texture"))?;
            gl.bind_texture(glow::TEXTURE_2D, Some(raw));
            gl.pixel_store_i32(glow::UNPACK_ALIGNMENT, 1);
            gl.tex_image_2d(
                glow::TEXTURE_2D,
                0,
                glow::RGBA8 as i32,
                width as i32,
                height as i32,
                0,
                glow::RGBA,
                glow::UNSIGNED_BYTE,
                glow::PixelUnpackData::Slice(Some(pixels)),
            );
            gl.generate_mipmap(glow::TEXTURE_2D);
            for (parameter, value) in [
                (glow::TEXTURE_MIN_FILTER, glow::LINEAR_MIPMAP_LINEAR),
                (glow::TEXTURE_MAG_FILTER, glow::LINEAR),
                (glow::TEXTURE_WRAP_S, glow::REPEAT),
                (glow::TEXTURE_WRAP_T, glow::REPEAT),
            ] {
                gl.tex_parameter_i32(glow::TEXTURE_2D, parameter, value as i32);
            }
            gl.bind_texture(glow::TEXTURE_2D, None);
            Ok(Self {
                gl: Rc::clone(gl),
                raw,
            })
        }
    }

    /// Binds the texture to texture unit `unit`.
    pub fn bind(&self, unit: u32) {
        // SAFETY: context current; the texture is alive while `self` is.
        unsafe {
            self.gl.active_texture(glow::TEXTURE0 + unit);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(self.raw));
        }
    }
}

impl Drop for Texture {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { self.gl.delete_texture(self.raw) }
    }
}

/// A GL buffer object. The readback ring uses these as pixel-pack buffers; meshes as vertex
/// buffers.
pub struct Buffer {
    gl: Rc<glow::Context>,
    raw: glow::Buffer,
}

impl Buffer {
    /// Creates an empty buffer name.
    pub fn new(gl: &Rc<glow::Context>) -> Result<Self, GlError> {
        // SAFETY: context current (module invariant).
        let raw = unsafe { gl.create_buffer() }.map_err(create_error("buffer"))?;
        Ok(Self {
            gl: Rc::clone(gl),
            raw,
        })
    }

    /// The raw handle, for the readback ring's GL calls.
    pub(super) fn raw(&self) -> glow::Buffer {
        self.raw
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { self.gl.delete_buffer(self.raw) }
    }
}

/// Uploads interleaved float `vertices` into `vbo` (and `indices` into an element buffer) and
/// makes a vertex array describing them; `layout` lists (attribute location, component count)
/// in the order they are interleaved. The caller owns the buffers and the returned array.
fn vertex_array(
    gl: &glow::Context,
    vbo: &Buffer,
    vertices: &[f32],
    elements: Option<(&Buffer, &[u32])>,
    layout: &[(u32, i32)],
) -> Result<glow::VertexArray, GlError> {
    let floats_per_vertex: i32 = layout.iter().map(|(_, n)| n).sum();
    let stride_bytes = floats_per_vertex * 4;
    // SAFETY: context current; the data pointers and lengths come from slices, and every
    // attribute offset stays inside one vertex's stride. The element buffer binding is VAO
    // state, so it is bound while the VAO is and left bound to it.
    unsafe {
        let vao = gl
            .create_vertex_array()
            .map_err(create_error("vertex array"))?;
        gl.bind_vertex_array(Some(vao));
        gl.bind_buffer(glow::ARRAY_BUFFER, Some(vbo.raw));
        let bytes: Vec<u8> = vertices.iter().flat_map(|f| f.to_le_bytes()).collect();
        gl.buffer_data_u8_slice(glow::ARRAY_BUFFER, &bytes, glow::STATIC_DRAW);
        if let Some((ebo, indices)) = elements {
            gl.bind_buffer(glow::ELEMENT_ARRAY_BUFFER, Some(ebo.raw));
            let index_bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
            gl.buffer_data_u8_slice(glow::ELEMENT_ARRAY_BUFFER, &index_bytes, glow::STATIC_DRAW);
        }
        let mut offset_bytes = 0;
        for &(location, components) in layout {
            gl.enable_vertex_attrib_array(location);
            gl.vertex_attrib_pointer_f32(
                location,
                components,
                glow::FLOAT,
                false,
                stride_bytes,
                offset_bytes,
            );
            offset_bytes += components * 4;
        }
        gl.bind_vertex_array(None);
        gl.bind_buffer(glow::ARRAY_BUFFER, None);
        Ok(vao)
    }
}

/// Interleaved float vertices in a vertex array, drawn as triangles.
pub struct Mesh {
    gl: Rc<glow::Context>,
    vao: glow::VertexArray,
    _vbo: Buffer,
    vertex_count: i32,
}

impl Mesh {
    /// `layout` lists (attribute location, component count) in the order they are interleaved.
    pub fn new(
        gl: &Rc<glow::Context>,
        vertices: &[f32],
        layout: &[(u32, i32)],
    ) -> Result<Self, GlError> {
        let floats_per_vertex: i32 = layout.iter().map(|(_, n)| n).sum();
        let vbo = Buffer::new(gl)?;
        let vao = vertex_array(gl, &vbo, vertices, None, layout)?;
        Ok(Self {
            gl: Rc::clone(gl),
            vao,
            _vbo: vbo,
            vertex_count: vertices.len() as i32 / floats_per_vertex.max(1),
        })
    }

    /// Draws every vertex as triangles with the bound program.
    pub fn draw(&self) {
        // SAFETY: context current; the VAO's attributes point into `_vbo`, alive with `self`.
        unsafe {
            self.gl.bind_vertex_array(Some(self.vao));
            self.gl.draw_arrays(glow::TRIANGLES, 0, self.vertex_count);
            self.gl.bind_vertex_array(None);
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { self.gl.delete_vertex_array(self.vao) }
    }
}

/// Interleaved float vertices and 32-bit indices in a vertex array, drawn as indexed triangles.
pub struct IndexedMesh {
    gl: Rc<glow::Context>,
    vao: glow::VertexArray,
    _vbo: Buffer,
    _ebo: Buffer,
    index_count: i32,
}

impl IndexedMesh {
    /// `layout` lists (attribute location, component count) in the order they are interleaved.
    /// Every index must be below the number of vertices; callers check this, because GL reads
    /// out of bounds (undefined behaviour, a crash on some drivers) if it does not hold.
    pub fn new(
        gl: &Rc<glow::Context>,
        vertices: &[f32],
        indices: &[u32],
        layout: &[(u32, i32)],
    ) -> Result<Self, GlError> {
        let floats_per_vertex: i32 = layout.iter().map(|(_, n)| n).sum();
        let vertex_count = vertices.len() / floats_per_vertex.max(1) as usize;
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= vertex_count) {
            return Err(GlError::Create {
                what: "indexed mesh",
                message: format!("index {bad} is out of range for {vertex_count} vertices"),
            });
        }
        let vbo = Buffer::new(gl)?;
        let ebo = Buffer::new(gl)?;
        let vao = vertex_array(gl, &vbo, vertices, Some((&ebo, indices)), layout)?;
        Ok(Self {
            gl: Rc::clone(gl),
            vao,
            _vbo: vbo,
            _ebo: ebo,
            index_count: indices.len() as i32,
        })
    }

    /// Draws every index as triangles with the bound program.
    pub fn draw(&self) {
        // SAFETY: context current; the VAO's attributes and element buffer are `_vbo` and
        // `_ebo`, alive with `self`, and every index is in range (checked in `new`).
        unsafe {
            self.gl.bind_vertex_array(Some(self.vao));
            self.gl
                .draw_elements(glow::TRIANGLES, self.index_count, glow::UNSIGNED_INT, 0);
            self.gl.bind_vertex_array(None);
        }
    }
}

impl Drop for IndexedMesh {
    fn drop(&mut self) {
        // SAFETY: we own the handle; the buffers delete themselves after it.
        unsafe { self.gl.delete_vertex_array(self.vao) }
    }
}

/// A vertex array with no attributes, for passes that make their vertices from `gl_VertexID`
/// (a full-screen triangle). Core profile refuses draws with no VAO bound.
pub struct EmptyVertexArray {
    gl: Rc<glow::Context>,
    vao: glow::VertexArray,
}

impl EmptyVertexArray {
    /// Creates the vertex array.
    pub fn new(gl: &Rc<glow::Context>) -> Result<Self, GlError> {
        // SAFETY: context current (module invariant).
        let vao = unsafe { gl.create_vertex_array() }.map_err(create_error("vertex array"))?;
        Ok(Self {
            gl: Rc::clone(gl),
            vao,
        })
    }

    /// Draws `count` vertices as triangles with the bound program.
    pub fn draw(&self, count: i32) {
        // SAFETY: context current; the VAO has no attributes, so nothing is read from memory.
        unsafe {
            self.gl.bind_vertex_array(Some(self.vao));
            self.gl.draw_arrays(glow::TRIANGLES, 0, count);
            self.gl.bind_vertex_array(None);
        }
    }
}

impl Drop for EmptyVertexArray {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { self.gl.delete_vertex_array(self.vao) }
    }
}

/// The offscreen target every frame is rendered into: an FBO with an RGBA8 colour texture and a
/// 32-bit float depth texture, exactly `width_px` × `height_px`. Textures rather than
/// renderbuffers, so the output pass ([`super::output::OutputPass`]) can sample colour and depth.
pub struct RenderTarget {
    gl: Rc<glow::Context>,
    fbo: glow::Framebuffer,
    color: glow::Texture,
    depth: glow::Texture,
    width_px: u32,
    height_px: u32,
}

impl RenderTarget {
    /// Creates and checks the framebuffer; `max_px` is the driver's largest target size.
    pub fn new(
        gl: &Rc<glow::Context>,
        width_px: u32,
        height_px: u32,
        max_px: u32,
    ) -> Result<Self, GlError> {
        if width_px > max_px || height_px > max_px {
            return Err(GlError::TooLarge {
                width: width_px,
                height: height_px,
                max: max_px,
            });
        }
        // SAFETY: context current; every handle is owned by the returned value, which deletes
        // them in `Drop` (also on the incomplete-framebuffer path, via `target` going out of
        // scope); the textures get no initial data (PixelUnpackData::Slice(None)).
        unsafe {
            let fbo = gl
                .create_framebuffer()
                .map_err(create_error("framebuffer"))?;
            let color = gl.create_texture().map_err(create_error("texture"))?;
            let depth = gl.create_texture().map_err(create_error("texture"))?;
            let target = Self {
                gl: Rc::clone(gl),
                fbo,
                color,
                depth,
                width_px,
                height_px,
            };
            gl.bind_framebuffer(glow::FRAMEBUFFER, Some(fbo));
            for (texture, internal, format, kind, attachment) in [
                (
                    color,
                    glow::RGBA8,
                    glow::RGBA,
                    glow::UNSIGNED_BYTE,
                    glow::COLOR_ATTACHMENT0,
                ),
                (
                    depth,
                    glow::DEPTH_COMPONENT32F,
                    glow::DEPTH_COMPONENT,
                    glow::FLOAT,
                    glow::DEPTH_ATTACHMENT,
                ),
            ] {
                gl.bind_texture(glow::TEXTURE_2D, Some(texture));
                gl.tex_image_2d(
                    glow::TEXTURE_2D,
                    0,
                    internal as i32,
                    width_px as i32,
                    height_px as i32,
                    0,
                    format,
                    kind,
                    glow::PixelUnpackData::Slice(None),
                );
                for parameter in [glow::TEXTURE_MIN_FILTER, glow::TEXTURE_MAG_FILTER] {
                    gl.tex_parameter_i32(glow::TEXTURE_2D, parameter, glow::NEAREST as i32);
                }
                gl.framebuffer_texture_2d(
                    glow::FRAMEBUFFER,
                    attachment,
                    glow::TEXTURE_2D,
                    Some(texture),
                    0,
                );
            }
            gl.bind_texture(glow::TEXTURE_2D, None);
            let status = gl.check_framebuffer_status(glow::FRAMEBUFFER);
            if status != glow::FRAMEBUFFER_COMPLETE {
                return Err(GlError::Framebuffer(status));
            }
            Ok(target)
        }
    }

    /// Width in pixels.
    pub fn width_px(&self) -> u32 {
        self.width_px
    }

    /// Height in pixels.
    pub fn height_px(&self) -> u32 {
        self.height_px
    }

    /// Binds the target for drawing and reading, sets the viewport and clears colour and depth.
    pub fn begin(&self, clear: [f32; 4]) {
        // SAFETY: context current; the framebuffer is alive and complete (checked in `new`).
        unsafe {
            self.gl.bind_framebuffer(glow::FRAMEBUFFER, Some(self.fbo));
            self.gl
                .viewport(0, 0, self.width_px as i32, self.height_px as i32);
            self.gl.clear_color(clear[0], clear[1], clear[2], clear[3]);
            self.gl.clear_depth_f32(1.0);
            self.gl
                .clear(glow::COLOR_BUFFER_BIT | glow::DEPTH_BUFFER_BIT);
        }
    }

    /// Binds the colour texture to unit 0 and the depth texture to unit 1 for sampling.
    pub(super) fn bind_textures(&self) {
        // SAFETY: context current; both textures are alive while `self` is.
        unsafe {
            self.gl.active_texture(glow::TEXTURE0);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(self.color));
            self.gl.active_texture(glow::TEXTURE1);
            self.gl.bind_texture(glow::TEXTURE_2D, Some(self.depth));
            self.gl.active_texture(glow::TEXTURE0);
        }
    }
}

/// Something `glReadPixels` can read a frame from.
pub trait ReadSource {
    /// Binds the framebuffer and colour attachment to read from.
    fn bind_read(&self);
}

impl ReadSource for RenderTarget {
    fn bind_read(&self) {
        // SAFETY: context current; the framebuffer is alive.
        unsafe {
            self.gl
                .bind_framebuffer(glow::READ_FRAMEBUFFER, Some(self.fbo));
            self.gl.read_buffer(glow::COLOR_ATTACHMENT0);
        }
    }
}

impl Drop for RenderTarget {
    fn drop(&mut self) {
        // SAFETY: we own all three handles.
        unsafe {
            self.gl.delete_framebuffer(self.fbo);
            self.gl.delete_texture(self.color);
            self.gl.delete_texture(self.depth);
        }
    }
}

/// Blocks until every GL command issued so far has executed (`glFinish`). Only for measuring:
/// the frame loop itself waits on fences, never on the whole pipeline.
pub fn finish(gl: &glow::Context) {
    // SAFETY: context current (module invariant); glFinish has no arguments.
    unsafe { gl.finish() }
}

/// Fixed-function state the scenes switch between passes.
pub fn set_depth_test(gl: &glow::Context, enabled: bool) {
    // SAFETY: context current (module invariant); plain state toggles.
    unsafe {
        if enabled {
            gl.enable(glow::DEPTH_TEST);
            gl.depth_func(glow::LESS);
        } else {
            gl.disable(glow::DEPTH_TEST);
        }
    }
}

/// Culls back faces (counter-clockwise front) when `enabled`.
pub fn set_cull_back_faces(gl: &glow::Context, enabled: bool) {
    // SAFETY: context current (module invariant); plain state toggles.
    unsafe {
        if enabled {
            gl.enable(glow::CULL_FACE);
            gl.cull_face(glow::BACK);
        } else {
            gl.disable(glow::CULL_FACE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::short_log;

    #[test]
    fn short_log_keeps_error_lines_with_numbers() {
        let log = "0:3(5): error: `foo' undeclared\n0:3(5): warning: unused\n\n0:4(1): error: syntax error\n";
        assert_eq!(
            short_log(log),
            "0:3(5): error: `foo' undeclared; 0:4(1): error: syntax error"
        );
    }
}
