//! GL objects that own their handle and delete it in `Drop`, and the few safe operations the
//! scenes need on them.
//!
//! glow's handles are `Copy` and have no `Drop`, so a bare handle in a struct is a leak. Each type
//! here keeps the [`Gl`] of the context it was created in, which lets it delete itself, pins it to
//! the GL thread (`Gl` is `!Send`) and ties it to that context. Every GL call goes through `Gl`,
//! which checks that the object's context is the one current on this thread (module invariant:
//! "context current" below means that check passed), and `Drop` hands the name to
//! `Gl::delete`, which deletes it now, when the context is next current, or not at all once the
//! context is destroyed.

use glam::{Mat4, Vec3, Vec4};
use glow::HasContext;

use super::GlError;
use super::context::{Gl, Name};

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

/// A pipeline stage a [`Shader`] is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `GL_VERTEX_SHADER`.
    Vertex,
    /// `GL_FRAGMENT_SHADER`.
    Fragment,
}

impl Stage {
    fn gl_kind(self) -> u32 {
        match self {
            Stage::Vertex => glow::VERTEX_SHADER,
            Stage::Fragment => glow::FRAGMENT_SHADER,
        }
    }

    /// How [`GlError::Compile`] names the stage.
    fn label(self) -> &'static str {
        match self {
            Stage::Vertex => "vertex",
            Stage::Fragment => "fragment",
        }
    }
}

/// One compiled shader stage. It exists only while [`Program::new`] links, and deletes itself
/// in `Drop`, so that every way out of `Program::new` (a stage that does not compile, a program
/// that does not link, a driver that cannot create a name) leaves no shader behind.
struct Shader {
    gl: Gl,
    raw: glow::Shader,
}

impl Shader {
    /// Compiles `source` after `header`; `name` (the program's) appears in errors.
    fn compile(
        gl: &Gl,
        name: &str,
        stage: Stage,
        header: &str,
        source: &str,
    ) -> Result<Self, GlError> {
        // SAFETY: context current on this thread (module invariant); the new name is owned by
        // the returned value, or by `shader` on the error path, and deleted in its `Drop`.
        unsafe {
            let raw = gl
                .create_shader(stage.gl_kind())
                .map_err(create_error("shader"))?;
            let shader = Self {
                gl: gl.clone(),
                raw,
            };
            // The header is one line per `\n`, and drivers count lines from the first source
            // string; `#line 1` makes the log's line numbers those of the file.
            gl.shader_source(raw, &format!("{header}#line 1\n{source}"));
            gl.compile_shader(raw);
            if !gl.get_shader_compile_status(raw) {
                return Err(GlError::Compile {
                    name: name.to_string(),
                    stage: stage.label(),
                    log: short_log(&gl.get_shader_info_log(raw)),
                });
            }
            Ok(shader)
        }
    }
}

impl Drop for Shader {
    fn drop(&mut self) {
        // A shader still attached to a program is only flagged for deletion, which is why
        // `Program::new` detaches before its shaders drop.
        self.gl.delete(Name::Shader(self.raw));
    }
}

/// A linked shader program; its uniforms are set through [`Uniform`] locations looked up once.
pub struct Program {
    gl: Gl,
    raw: glow::Program,
    /// What errors call it (a shader path or a user's file).
    name: String,
}

impl Program {
    /// Compiles and links a program. `header` is the `#version` prologue for the context's
    /// dialect; `name` appears in errors.
    pub fn new(
        gl: &Gl,
        name: &str,
        header: &str,
        vertex: &str,
        fragment: &str,
    ) -> Result<Self, GlError> {
        // SAFETY: context current on this thread (module invariant). The program is owned by
        // `program` and the shaders by their `Shader` values from the moment they exist, so an
        // early return deletes whatever was made so far.
        unsafe {
            let raw = gl.create_program().map_err(create_error("program"))?;
            let program = Self {
                gl: gl.clone(),
                raw,
                name: name.to_string(),
            };
            let shaders = [
                Shader::compile(gl, name, Stage::Vertex, header, vertex)?,
                Shader::compile(gl, name, Stage::Fragment, header, fragment)?,
            ];
            for shader in &shaders {
                gl.attach_shader(raw, shader.raw);
            }
            gl.link_program(raw);
            // A linked program keeps its code; detaching lets the shaders' `Drop` free them now
            // rather than when the program goes.
            for shader in &shaders {
                gl.detach_shader(raw, shader.raw);
            }
            if !gl.get_program_link_status(raw) {
                return Err(GlError::Link {
                    name: name.to_string(),
                    log: short_log(&gl.get_program_info_log(raw)),
                });
            }
            Ok(program)
        }
    }

    /// Makes this the current program.
    pub fn bind(&self) {
        // SAFETY: context current (module invariant); the program is alive while `self` is.
        unsafe { self.gl.use_program(Some(self.raw)) }
    }

    /// Looks up a uniform of one of our own shaders, once, so the per-frame setters need no
    /// name lookup (glow's `get_uniform_location` builds a `CString` on every call, which would
    /// allocate per frame). A name the program does not have is [`GlError::MissingUniform`]: in
    /// a built-in shader that is a typo, or a uniform the compiler removed because it is unused,
    /// and either way a frame would silently be drawn without it.
    pub fn uniform(&self, name: &str) -> Result<Uniform, GlError> {
        match self.optional_uniform(name) {
            Uniform(Some(location)) => Ok(Uniform(Some(location))),
            Uniform(None) => Err(GlError::MissingUniform {
                program: self.name.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// Looks up a uniform a user's shader may leave out (a Shadertoy file need not use
    /// `iTime`, and the compiler removes what it does not use): a missing one gives a location
    /// that sets nothing, as GL does for location -1.
    pub fn optional_uniform(&self, name: &str) -> Uniform {
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

/// What a uniform a user's shader declares holds, as far as a control request can set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniformKind {
    /// `float` (1), `vec2` (2), `vec3` (3) or `vec4` (4).
    Float(usize),
    /// `int`.
    Int,
    /// Anything else (a matrix, a sampler, an array, a bool...): not settable by request.
    Other,
}

impl UniformKind {
    /// Its GLSL name.
    pub fn glsl(self) -> &'static str {
        match self {
            UniformKind::Float(1) => "float",
            UniformKind::Float(2) => "vec2",
            UniformKind::Float(3) => "vec3",
            UniformKind::Float(_) => "vec4",
            UniformKind::Int => "int",
            UniformKind::Other => "type a request cannot set",
        }
    }
}

/// A uniform a program declares (and the compiler kept), found by introspection.
#[derive(Debug, Clone)]
pub struct ActiveUniform {
    /// Its name in the source.
    pub name: String,
    /// What it holds.
    pub kind: UniformKind,
    /// Where to set it.
    pub location: Uniform,
}

impl Program {
    /// The program's active uniforms, by introspection (once, at start-up: it allocates).
    pub fn active_uniforms(&self) -> Vec<ActiveUniform> {
        // SAFETY: context current (module invariant); the program is alive and linked, and
        // indices below the active count are valid.
        unsafe {
            let count = self.gl.get_active_uniforms(self.raw);
            (0..count)
                .filter_map(|index| self.gl.get_active_uniform(self.raw, index))
                .map(|u| {
                    let kind = match (u.utype, u.size) {
                        (glow::FLOAT, 1) => UniformKind::Float(1),
                        (glow::FLOAT_VEC2, 1) => UniformKind::Float(2),
                        (glow::FLOAT_VEC3, 1) => UniformKind::Float(3),
                        (glow::FLOAT_VEC4, 1) => UniformKind::Float(4),
                        (glow::INT, 1) => UniformKind::Int,
                        _ => UniformKind::Other,
                    };
                    let location = Uniform(self.gl.get_uniform_location(self.raw, &u.name));
                    ActiveUniform {
                        name: u.name,
                        kind,
                        location,
                    }
                })
                .collect()
        }
    }

    /// Sets a `float` to `vec4` uniform from 1 to 4 values on this (bound) program.
    pub fn set_floats(&self, uniform: &Uniform, values: &[f32]) {
        let location = uniform.0.as_ref();
        // SAFETY: context current (module invariant); each call passes as many values as the
        // uniform's size, which the caller matched to its declared type.
        unsafe {
            match *values {
                [x] => self.gl.uniform_1_f32(location, x),
                [x, y] => self.gl.uniform_2_f32(location, x, y),
                [x, y, z] => self.gl.uniform_3_f32(location, x, y, z),
                [x, y, z, w] => self.gl.uniform_4_f32(location, x, y, z, w),
                _ => {}
            }
        }
    }
}

/// A uniform's location in one [`Program`], looked up once with [`Program::uniform`] or
/// [`Program::optional_uniform`] (`None` inside: an absent optional uniform, which sets nothing).
/// Use it only with the program that made it: a location means nothing in another program.
#[derive(Debug, Clone)]
pub struct Uniform(Option<glow::UniformLocation>);

impl Drop for Program {
    fn drop(&mut self) {
        self.gl.delete(Name::Program(self.raw));
    }
}

/// A 2D texture: either an RGBA8 image with mipmaps, sampled with trilinear filtering and repeat
/// ([`Texture::from_rgba8`]), or an uninitialised, nearest-filtered render-target attachment
/// ([`Texture::attachment`]).
pub struct Texture {
    gl: Gl,
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
    pub fn from_rgba8(gl: &Gl, width: u32, height: u32, pixels: &[u8]) -> Result<Self, GlError> {
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
                gl: gl.clone(),
                raw,
            })
        }
    }

    /// Allocates an uninitialised `width_px` × `height_px` texture to render into, with
    /// storage `internal` (`format` / `kind` only name the absent upload's layout) and nearest
    /// filtering, since the output pass fetches texels one for one. The caller checks the size
    /// against the driver's limit.
    pub fn attachment(
        gl: &Gl,
        internal: u32,
        format: u32,
        kind: u32,
        width_px: u32,
        height_px: u32,
    ) -> Result<Self, GlError> {
        // SAFETY: context current; the new name is owned by `texture` from the start, and no
        // initial data is read (PixelUnpackData::Slice(None)).
        unsafe {
            let raw = gl.create_texture().map_err(create_error("texture"))?;
            let texture = Self {
                gl: gl.clone(),
                raw,
            };
            gl.bind_texture(glow::TEXTURE_2D, Some(raw));
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
            gl.bind_texture(glow::TEXTURE_2D, None);
            Ok(texture)
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
        self.gl.delete(Name::Texture(self.raw));
    }
}

/// A GL buffer object. The readback ring uses these as pixel-pack buffers; meshes as vertex
/// buffers.
pub struct Buffer {
    gl: Gl,
    raw: glow::Buffer,
}

impl Buffer {
    /// Creates an empty buffer name.
    pub fn new(gl: &Gl) -> Result<Self, GlError> {
        // SAFETY: context current (module invariant).
        let raw = unsafe { gl.create_buffer() }.map_err(create_error("buffer"))?;
        Ok(Self {
            gl: gl.clone(),
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
        self.gl.delete(Name::Buffer(self.raw));
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

/// Interleaved float vertices in a vertex array, and optionally 32-bit indices into them, drawn
/// as triangles.
pub struct Mesh {
    gl: Gl,
    vao: glow::VertexArray,
    _vbo: Buffer,
    /// The element buffer, when the mesh is indexed; `count` is then the number of indices.
    ebo: Option<Buffer>,
    /// Vertices (or indices, when indexed) that one draw submits.
    count: i32,
}

impl Mesh {
    /// `layout` lists (attribute location, component count) in the order they are interleaved.
    /// With `indices`, every index must be below the number of vertices, or the mesh is refused
    /// ([`GlError::Create`]): GL would read out of bounds (undefined behaviour, a crash on some
    /// drivers).
    pub fn new(
        gl: &Gl,
        vertices: &[f32],
        indices: Option<&[u32]>,
        layout: &[(u32, i32)],
    ) -> Result<Self, GlError> {
        let floats_per_vertex: i32 = layout.iter().map(|(_, n)| n).sum();
        let vertex_count = vertices.len() / floats_per_vertex.max(1) as usize;
        if let Some(bad) = indices
            .unwrap_or_default()
            .iter()
            .find(|&&i| i as usize >= vertex_count)
        {
            return Err(GlError::Create {
                what: "indexed mesh",
                message: format!("index {bad} is out of range for {vertex_count} vertices"),
            });
        }
        let vbo = Buffer::new(gl)?;
        let ebo = indices.map(|_| Buffer::new(gl)).transpose()?;
        let vao = vertex_array(gl, &vbo, vertices, ebo.as_ref().zip(indices), layout)?;
        Ok(Self {
            gl: gl.clone(),
            vao,
            _vbo: vbo,
            ebo,
            count: indices.map_or(vertex_count, <[u32]>::len) as i32,
        })
    }

    /// Draws the mesh as triangles with the bound program.
    pub fn draw(&self) {
        // SAFETY: context current; the VAO's attributes and element buffer are `_vbo` and
        // `ebo`, alive with `self`, and every index is in range (checked in `new`).
        unsafe {
            self.gl.bind_vertex_array(Some(self.vao));
            if self.ebo.is_some() {
                self.gl
                    .draw_elements(glow::TRIANGLES, self.count, glow::UNSIGNED_INT, 0);
            } else {
                self.gl.draw_arrays(glow::TRIANGLES, 0, self.count);
            }
            self.gl.bind_vertex_array(None);
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // The buffers delete themselves after it.
        self.gl.delete(Name::VertexArray(self.vao));
    }
}

/// A vertex array with no attributes, for passes that make their vertices from `gl_VertexID`
/// (a full-screen triangle). Core profile refuses draws with no VAO bound.
struct EmptyVertexArray {
    gl: Gl,
    vao: glow::VertexArray,
}

impl EmptyVertexArray {
    /// Creates the vertex array.
    fn new(gl: &Gl) -> Result<Self, GlError> {
        // SAFETY: context current (module invariant).
        let vao = unsafe { gl.create_vertex_array() }.map_err(create_error("vertex array"))?;
        Ok(Self {
            gl: gl.clone(),
            vao,
        })
    }

    /// Draws `count` vertices as triangles with the bound program.
    fn draw(&self, count: i32) {
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
        self.gl.delete(Name::VertexArray(self.vao));
    }
}

/// A fragment shader run once for every pixel of the bound target: the program pairs it with
/// `shaders/fullscreen.vert`, which makes one triangle covering the viewport from
/// `gl_VertexID`, so no vertex buffer is needed. The backdrop, the shader and pattern scenes and
/// the output pass are all one of these.
pub struct FullscreenPass {
    program: Program,
    triangle: EmptyVertexArray,
}

impl FullscreenPass {
    /// Compiles and links `fragment` with the full-screen vertex shader; `name` appears in
    /// errors, `header` is the context's `#version` prologue.
    pub fn new(gl: &Gl, name: &str, header: &str, fragment: &str) -> Result<Self, GlError> {
        let program = Program::new(
            gl,
            name,
            header,
            include_str!("../../shaders/fullscreen.vert"),
            fragment,
        )?;
        Ok(Self {
            program,
            triangle: EmptyVertexArray::new(gl)?,
        })
    }

    /// The program, to look uniforms up in and, once bound, to set them on.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Draws the triangle with the program bound, and with depth test, culling and blending
    /// off: a full-screen pass writes exactly what its shader computes into every pixel and
    /// leaves the depth buffer as it was. Those states stay off afterwards.
    pub fn draw(&self) {
        let gl = &self.program.gl;
        set_depth_test(gl, false);
        set_cull_back_faces(gl, false);
        // SAFETY: context current (module invariant); a plain state toggle.
        unsafe { gl.disable(glow::BLEND) };
        self.program.bind();
        self.triangle.draw(3);
    }
}

/// A renderbuffer: storage a framebuffer can draw into but nothing can sample.
pub struct Renderbuffer {
    gl: Gl,
    raw: glow::Renderbuffer,
}

impl Renderbuffer {
    /// The GL name.
    pub(super) fn raw(&self) -> glow::Renderbuffer {
        self.raw
    }

    /// Allocates `width_px` × `height_px` of storage `internal` (a sized format).
    pub fn new(gl: &Gl, internal: u32, width_px: u32, height_px: u32) -> Result<Self, GlError> {
        // SAFETY: context current; the new name is owned by `renderbuffer` from the start.
        unsafe {
            let raw = gl
                .create_renderbuffer()
                .map_err(create_error("renderbuffer"))?;
            let renderbuffer = Self {
                gl: gl.clone(),
                raw,
            };
            gl.bind_renderbuffer(glow::RENDERBUFFER, Some(raw));
            gl.renderbuffer_storage(
                glow::RENDERBUFFER,
                internal,
                width_px as i32,
                height_px as i32,
            );
            gl.bind_renderbuffer(glow::RENDERBUFFER, None);
            Ok(renderbuffer)
        }
    }
}

impl Drop for Renderbuffer {
    fn drop(&mut self) {
        self.gl.delete(Name::Renderbuffer(self.raw));
    }
}

/// What a [`Framebuffer`] draws into at one attachment point.
pub enum Attachment<'a> {
    /// A texture's level 0, which can later be sampled.
    Texture(&'a Texture),
    /// A renderbuffer.
    Renderbuffer(&'a Renderbuffer),
    /// A colour image that another context of the share group owns ([`SharedColor`]).
    Shared(SharedColor),
}

/// The colour image of a target, by name, for a context that shares the owner's objects to
/// attach to a framebuffer of its own (framebuffers are not shared; textures and renderbuffers
/// are). The owner keeps the image alive while the other context reads it.
#[derive(Debug, Clone, Copy)]
pub enum SharedColor {
    /// A 2D texture's level 0.
    Texture(glow::Texture),
    /// A renderbuffer.
    Renderbuffer(glow::Renderbuffer),
}

/// A framebuffer object whose attachments all are `width_px` × `height_px`. It is checked for
/// completeness when made, so drawing into it or reading from it never meets an incomplete one.
/// It does not own its attachments: the type holding both keeps them alive at least as long
/// (declare the framebuffer first, so it is deleted first).
pub struct Framebuffer {
    gl: Gl,
    raw: glow::Framebuffer,
    width_px: u32,
    height_px: u32,
}

impl Framebuffer {
    /// Creates the framebuffer, attaches `attachments` (attachment point, what) and checks it
    /// is complete ([`GlError::Framebuffer`] with the status otherwise). It is left bound to
    /// `GL_FRAMEBUFFER`.
    pub fn new(
        gl: &Gl,
        width_px: u32,
        height_px: u32,
        attachments: &[(u32, Attachment<'_>)],
    ) -> Result<Self, GlError> {
        // SAFETY: context current; the new name is owned by `framebuffer` from the start, so
        // it is deleted on the incomplete path too; the attached objects are alive (borrowed).
        unsafe {
            let raw = gl
                .create_framebuffer()
                .map_err(create_error("framebuffer"))?;
            let framebuffer = Self {
                gl: gl.clone(),
                raw,
                width_px,
                height_px,
            };
            gl.bind_framebuffer(glow::FRAMEBUFFER, Some(raw));
            for (point, attachment) in attachments {
                match attachment {
                    Attachment::Texture(texture) => gl.framebuffer_texture_2d(
                        glow::FRAMEBUFFER,
                        *point,
                        glow::TEXTURE_2D,
                        Some(texture.raw),
                        0,
                    ),
                    Attachment::Renderbuffer(renderbuffer) => gl.framebuffer_renderbuffer(
                        glow::FRAMEBUFFER,
                        *point,
                        glow::RENDERBUFFER,
                        Some(renderbuffer.raw),
                    ),
                    Attachment::Shared(SharedColor::Texture(texture)) => gl.framebuffer_texture_2d(
                        glow::FRAMEBUFFER,
                        *point,
                        glow::TEXTURE_2D,
                        Some(*texture),
                        0,
                    ),
                    Attachment::Shared(SharedColor::Renderbuffer(renderbuffer)) => gl
                        .framebuffer_renderbuffer(
                            glow::FRAMEBUFFER,
                            *point,
                            glow::RENDERBUFFER,
                            Some(*renderbuffer),
                        ),
                }
            }
            let status = gl.check_framebuffer_status(glow::FRAMEBUFFER);
            if status != glow::FRAMEBUFFER_COMPLETE {
                return Err(GlError::Framebuffer(status));
            }
            Ok(framebuffer)
        }
    }

    /// Binds the framebuffer for drawing (and reading) and sets the viewport to cover it.
    pub fn bind_draw(&self) {
        // SAFETY: context current; the framebuffer is alive and complete (checked in `new`).
        unsafe {
            self.gl.bind_framebuffer(glow::FRAMEBUFFER, Some(self.raw));
            self.gl
                .viewport(0, 0, self.width_px as i32, self.height_px as i32);
        }
    }
}

impl ReadSource for Framebuffer {
    fn bind_read(&self) {
        // SAFETY: context current; the framebuffer is alive and complete.
        unsafe {
            self.gl
                .bind_framebuffer(glow::READ_FRAMEBUFFER, Some(self.raw));
            self.gl.read_buffer(glow::COLOR_ATTACHMENT0);
        }
    }
}

impl Drop for Framebuffer {
    fn drop(&mut self) {
        // The attachments are deleted by their own owners.
        self.gl.delete(Name::Framebuffer(self.raw));
    }
}

/// The offscreen target every frame is rendered into: an FBO with an RGBA8 colour texture and a
/// 32-bit float depth texture, exactly `width_px` × `height_px`. Textures rather than
/// renderbuffers, so the output pass ([`super::output::OutputPass`]) can sample colour and depth.
pub struct RenderTarget {
    // Field order is drop order: the framebuffer goes before the textures attached to it.
    framebuffer: Framebuffer,
    color: Texture,
    depth: Texture,
    width_px: u32,
    height_px: u32,
}

impl RenderTarget {
    /// Creates and checks the framebuffer; `max_px` is the driver's largest target size.
    pub fn new(gl: &Gl, width_px: u32, height_px: u32, max_px: u32) -> Result<Self, GlError> {
        if width_px > max_px || height_px > max_px {
            return Err(GlError::TooLarge {
                width: width_px,
                height: height_px,
                max: max_px,
            });
        }
        let color = Texture::attachment(
            gl,
            glow::RGBA8,
            glow::RGBA,
            glow::UNSIGNED_BYTE,
            width_px,
            height_px,
        )?;
        let depth = Texture::attachment(
            gl,
            glow::DEPTH_COMPONENT32F,
            glow::DEPTH_COMPONENT,
            glow::FLOAT,
            width_px,
            height_px,
        )?;
        let framebuffer = Framebuffer::new(
            gl,
            width_px,
            height_px,
            &[
                (glow::COLOR_ATTACHMENT0, Attachment::Texture(&color)),
                (glow::DEPTH_ATTACHMENT, Attachment::Texture(&depth)),
            ],
        )?;
        let target = Self {
            framebuffer,
            color,
            depth,
            width_px,
            height_px,
        };
        // Once, so that scenes that clear nothing (they cover every pixel) still start from a
        // defined image and a depth of 1.0 (what depth32f shows for them).
        target.begin(Clear::ColorAndDepth([0.0, 0.0, 0.0, 1.0]));
        Ok(target)
    }

    /// Width in pixels.
    /// The colour texture, for a context sharing this one's objects to read.
    pub fn shared_color(&self) -> SharedColor {
        SharedColor::Texture(self.color.raw)
    }

    pub fn width_px(&self) -> u32 {
        self.width_px
    }

    /// Height in pixels.
    pub fn height_px(&self) -> u32 {
        self.height_px
    }

    /// Binds the target for drawing and reading, sets the viewport and clears what `clear`
    /// says. A clear is a full pass over the target on a software rasterizer: a scene clears
    /// only what it does not overwrite anyway.
    pub fn begin(&self, clear: Clear) {
        self.framebuffer.bind_draw();
        let gl = &self.framebuffer.gl;
        let bits = match clear {
            Clear::ColorAndDepth(color) => {
                // SAFETY: context current (module invariant); plain state.
                unsafe { gl.clear_color(color[0], color[1], color[2], color[3]) };
                glow::COLOR_BUFFER_BIT | glow::DEPTH_BUFFER_BIT
            }
            Clear::Depth => glow::DEPTH_BUFFER_BIT,
            Clear::Nothing => return,
        };
        // SAFETY: context current (module invariant); plain state and a clear of the bound,
        // complete framebuffer.
        unsafe {
            gl.clear_depth_f32(1.0);
            gl.clear(bits);
        }
    }

    /// Binds the colour texture to unit 0 and the depth texture to unit 1 for sampling.
    pub(super) fn bind_textures(&self) {
        // Unit 1 first, so that unit 0, GL's default, is left the active one.
        self.depth.bind(1);
        self.color.bind(0);
    }
}

/// What [`RenderTarget::begin`] clears before a frame is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clear {
    /// Colour to this RGBA value, and depth to 1.0.
    ColorAndDepth([f32; 4]),
    /// Depth only: the scene's backdrop covers every pixel's colour.
    Depth,
    /// Nothing: the scene writes every pixel and tests no depth (one full-screen pass).
    Nothing,
}

/// Something `glReadPixels` can read a frame from.
pub trait ReadSource {
    /// Binds the framebuffer and colour attachment to read from.
    fn bind_read(&self);
}

impl ReadSource for RenderTarget {
    fn bind_read(&self) {
        self.framebuffer.bind_read();
    }
}

/// Blocks until every GL command issued so far has executed (`glFinish`). Only for measuring:
/// the frame loop itself waits on fences, never on the whole pipeline.
pub fn finish(gl: &glow::Context) {
    // SAFETY: context current (module invariant); glFinish has no arguments.
    unsafe { gl.finish() }
}

/// Hands every GL command issued so far to the driver (`glFlush`): on a software rasterizer its
/// threads start on the frame now rather than at the next wait.
pub fn flush(gl: &glow::Context) {
    // SAFETY: context current (module invariant); glFlush has no arguments.
    unsafe { gl.flush() }
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

/// A fence after the commands issued so far: signalled once the GPU has executed them all. Owns
/// the sync object and deletes it in `Drop`, so a wait that fails or is abandoned cannot leak it.
pub struct Fence {
    gl: Gl,
    raw: glow::Fence,
}

impl Fence {
    /// Inserts a fence after every command issued so far.
    pub fn new(gl: &Gl) -> Result<Self, GlError> {
        // SAFETY: context current (module invariant); no pointers are involved.
        let raw = unsafe { gl.fence_sync(glow::SYNC_GPU_COMMANDS_COMPLETE, 0) }
            .map_err(create_error("fence"))?;
        Ok(Self {
            gl: gl.clone(),
            raw,
        })
    }

    /// Waits up to `timeout_ns` for the fence; returns whether it signalled.
    ///
    /// Every wait asks for `SYNC_FLUSH_COMMANDS_BIT`: the spec only guarantees a fence is ever
    /// reached once the commands before it were flushed, so a driver that follows it to the
    /// letter (unlike Mesa, which flushes anyway) would otherwise sit out the whole timeout on a
    /// first wait. Flushing an already flushed queue costs nothing (wgpu-hal's `gles/fence.rs`
    /// does the same).
    pub fn wait(&self, timeout_ns: u64) -> Result<bool, GlError> {
        // glow takes the timeout as an i32; longer waits are the caller's loop.
        let timeout_ns = timeout_ns.min(i32::MAX as u64) as i32;
        // SAFETY: context current; the sync object is alive (we own it).
        match unsafe {
            self.gl
                .client_wait_sync(self.raw, glow::SYNC_FLUSH_COMMANDS_BIT, timeout_ns)
        } {
            glow::ALREADY_SIGNALED | glow::CONDITION_SATISFIED => Ok(true),
            glow::TIMEOUT_EXPIRED => Ok(false),
            _ => Err(GlError::Readback(format!(
                "glClientWaitSync failed (error 0x{:04x})",
                // SAFETY: context current; a plain query.
                unsafe { self.gl.get_error() }
            ))),
        }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        // Deleting a sync object that was never waited on is allowed.
        self.gl.delete(Name::Fence(self.raw));
    }
}

#[cfg(test)]
mod tests {
    use glow::HasContext;

    use super::*;
    use crate::gl::context::HeadlessContext;

    /// A real context on Mesa's software device (or whatever EGL offers); these tests never
    /// skip, as the style asks, and the error says what to install.
    fn context() -> HeadlessContext {
        HeadlessContext::new(None).unwrap_or_else(|e| panic!("{e}"))
    }

    const VERTEX: &str = "void main() { gl_Position = vec4(0.0, 0.0, 0.0, 1.0); }\n";
    const FRAGMENT: &str =
        "out vec4 color;\nuniform vec4 u_color;\nvoid main() { color = u_color; }\n";

    #[test]
    fn a_shader_deletes_itself_and_a_failed_stage_names_itself() {
        let context = context();
        let gl = context.gl();
        let header = context.glsl_header();
        let shader = Shader::compile(gl, "test", Stage::Vertex, header, VERTEX).unwrap();
        let raw = shader.raw;
        // SAFETY: the context is current on this thread; a query.
        assert!(unsafe { gl.is_shader(raw) });
        drop(shader);
        // SAFETY: as above; a deleted name is no longer a shader.
        assert!(!unsafe { gl.is_shader(raw) });

        let broken = Program::new(gl, "broken", header, VERTEX, "void main() { nope; }\n");
        assert!(
            matches!(
                broken,
                Err(GlError::Compile {
                    stage: "fragment",
                    ..
                })
            ),
            "{:?}",
            broken.err()
        );
        assert!(Program::new(gl, "fine", header, VERTEX, FRAGMENT).is_ok());
    }

    #[test]
    fn a_missing_uniform_is_an_error_unless_optional() {
        let context = context();
        let program = Program::new(
            context.gl(),
            "test",
            context.glsl_header(),
            VERTEX,
            FRAGMENT,
        )
        .unwrap();
        assert!(program.uniform("u_color").is_ok());
        let missing = program.uniform("u_colour").unwrap_err();
        assert!(
            matches!(&missing, GlError::MissingUniform { program, name }
                if program == "test" && name == "u_colour"),
            "{missing:?}"
        );
        assert_eq!(
            missing.to_string(),
            "test: the shader has no active uniform u_colour"
        );
        assert!(program.optional_uniform("u_colour").0.is_none());
        assert!(program.optional_uniform("u_color").0.is_some());
    }

    #[test]
    fn a_framebuffer_is_checked_for_completeness() {
        let context = context();
        let gl = context.gl();
        let empty = Framebuffer::new(gl, 4, 4, &[]);
        assert!(
            matches!(
                empty,
                Err(GlError::Framebuffer(
                    glow::FRAMEBUFFER_INCOMPLETE_MISSING_ATTACHMENT
                ))
            ),
            "{:?}",
            empty.err()
        );
        let color = Renderbuffer::new(gl, glow::RGBA8, 4, 4).unwrap();
        let framebuffer = Framebuffer::new(
            gl,
            4,
            4,
            &[(glow::COLOR_ATTACHMENT0, Attachment::Renderbuffer(&color))],
        )
        .unwrap();
        let raw = framebuffer.raw;
        drop(framebuffer);
        // SAFETY: the context is current on this thread; a query of a deleted name.
        assert!(!unsafe { gl.is_framebuffer(raw) });
    }

    #[test]
    fn a_mesh_refuses_indices_past_its_vertices() {
        let context = context();
        let gl = context.gl();
        let triangle = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        assert!(Mesh::new(gl, &triangle, None, &[(0, 2)]).is_ok());
        assert!(Mesh::new(gl, &triangle, Some(&[0, 1, 2]), &[(0, 2)]).is_ok());
        let refused = Mesh::new(gl, &triangle, Some(&[0, 1, 3]), &[(0, 2)]);
        assert!(
            matches!(&refused, Err(GlError::Create { message, .. })
                if message == "index 3 is out of range for 3 vertices"),
            "{:?}",
            refused.err()
        );
    }

    /// A buffer that `glIsBuffer` reports: `glGenBuffers` only reserves a name, and the first
    /// bind makes the object.
    fn bound_buffer(gl: &Gl) -> Buffer {
        let buffer = Buffer::new(gl).unwrap();
        // SAFETY: the context is current (`Gl` checks); binding and unbinding a live buffer.
        unsafe {
            gl.bind_buffer(glow::ARRAY_BUFFER, Some(buffer.raw));
            gl.bind_buffer(glow::ARRAY_BUFFER, None);
        }
        buffer
    }

    fn is_buffer(gl: &Gl, raw: glow::Buffer) -> bool {
        // SAFETY: the context is current (`Gl` checks); a query.
        unsafe { gl.is_buffer(raw) }
    }

    #[test]
    fn an_object_dropped_while_another_context_is_current_waits_for_its_own() {
        let a = context();
        let in_a = bound_buffer(a.gl());
        let name = in_a.raw;
        let b = context();
        let in_b = bound_buffer(b.gl());
        assert_eq!(in_b.raw, name, "both contexts number their buffers alike");
        drop(in_a);
        // Not deleted in B, whose buffer of the same name lives on...
        assert!(is_buffer(b.gl(), name));
        // ...but left for A, which deletes it when it is current again.
        assert_eq!(a.gl().deferred_len(), 1);
        a.make_current().unwrap();
        assert_eq!(a.gl().deferred_len(), 0);
        assert!(!is_buffer(a.gl(), name));
        b.make_current().unwrap();
        assert!(is_buffer(b.gl(), in_b.raw));
    }

    #[test]
    fn an_object_that_outlives_its_context_touches_no_other() {
        let a = context();
        let stale_buffer = bound_buffer(a.gl());
        let stale_program = Program::new(a.gl(), "stale", a.glsl_header(), VERTEX, FRAGMENT)
            .unwrap_or_else(|e| panic!("{e}"));
        // As bench does between configurations: one context after the other on one thread.
        drop(a);
        let b = context();
        let buffer = bound_buffer(b.gl());
        let program = Program::new(b.gl(), "live", b.glsl_header(), VERTEX, FRAGMENT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (buffer.raw, program.raw),
            (stale_buffer.raw, stale_program.raw),
            "both contexts number their objects alike"
        );
        // Using the dead context's program would bind B's program of the same name: it panics.
        let used = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stale_program.bind()));
        assert!(used.is_err());
        // Dropping them deletes nothing in B: A's names went with A.
        drop(stale_buffer);
        drop(stale_program);
        assert!(is_buffer(b.gl(), buffer.raw));
        // SAFETY: B is current (`Gl` checks); a query.
        assert!(unsafe { b.gl().is_program(program.raw) });
        assert_eq!(b.gl().deferred_len(), 0);
    }

    #[test]
    fn short_log_keeps_error_lines_with_numbers() {
        let log = "0:3(5): error: `foo' undeclared\n0:3(5): warning: unused\n\n0:4(1): error: syntax error\n";
        assert_eq!(
            short_log(log),
            "0:3(5): error: `foo' undeclared; 0:4(1): error: syntax error"
        );
    }
}
