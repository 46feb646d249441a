//! The default scene: a lit, textured cube rotating over a gradient, depth-tested.
//!
//! The rotation is a pure function of the frame index (one turn every 240 frames about a tilted
//! axis), so any frame can be rendered on its own and compared with a golden image.

use std::f32::consts::TAU;

use glam::{Mat4, Vec3};

use super::backdrop::Backdrop;
use super::{Scene, SceneError, SceneOptions, SteeredCamera};
use crate::capture;
use crate::control::Settings;
use crate::gl::context::{Gl, HeadlessContext};
use crate::gl::objects::{
    Clear, Mesh, Program, RenderTarget, Texture, Uniform, set_cull_back_faces, set_depth_test,
};

const BUILTIN_TEXTURE: &[u8] = include_bytes!("../../assets/crate.png");
const FRAMES_PER_TURN: u64 = 240;

/// The default scene's GL objects and camera.
pub struct CubeScene {
    gl: Gl,
    backdrop: Backdrop,
    cube: Program,
    mesh: Mesh,
    texture: Texture,
    view_projection: Mat4,
    uniforms: CubeUniforms,
    /// The camera, which control requests may move.
    camera: SteeredCamera,
    aspect: f32,
}

/// Where the cube's camera starts.
const CAMERA: SteeredCamera = SteeredCamera {
    eye: Vec3::new(0.0, 0.6, 3.6),
    target: Vec3::ZERO,
    up: Vec3::Y,
    fov_deg: 45.0,
};
/// The cube camera's depth range.
const NEAR: f32 = 0.1;
const FAR: f32 = 100.0;

/// Uniform locations, looked up once so that a frame sets them without a name lookup (which
/// allocates in glow).
struct CubeUniforms {
    model: Uniform,
    view_projection: Uniform,
    light_direction: Uniform,
    texture: Uniform,
}

impl CubeScene {
    /// Compiles the shaders, uploads the cube and its texture. `aspect` is width / height.
    pub fn new(
        context: &HeadlessContext,
        options: &SceneOptions,
        aspect: f32,
    ) -> Result<Self, SceneError> {
        let gl = context.gl();
        let header = context.glsl_header();
        let backdrop = Backdrop::new(
            context,
            Vec3::new(0.05, 0.07, 0.20),
            Vec3::new(0.55, 0.70, 0.90),
        )?;
        let cube = Program::new(
            gl,
            "shaders/cube",
            header,
            include_str!("../../shaders/cube.vert"),
            include_str!("../../shaders/cube.frag"),
        )?;
        let max_side_px = Texture::max_side_px(gl);
        let max_pixels = u64::from(max_side_px) * u64::from(max_side_px);
        // The header's size is checked against the driver's limit before anything is decoded.
        let (name, decoded) = match &options.texture {
            Some(path) => {
                let file = std::fs::File::open(path).map_err(|source| SceneError::ReadTexture {
                    path: path.clone(),
                    source,
                })?;
                let reader = std::io::BufReader::new(file);
                let decoded = capture::decode_rgba8(reader, max_side_px, max_pixels);
                (path.display().to_string(), decoded)
            }
            None => {
                let reader = std::io::Cursor::new(BUILTIN_TEXTURE);
                let decoded = capture::decode_rgba8(reader, max_side_px, max_pixels);
                ("assets/crate.png".to_string(), decoded)
            }
        };
        let mut image = decoded.map_err(|source| SceneError::DecodeTexture { name, source })?;
        // Image rows run top-down and GL's texture rows bottom-up; flipping once here makes
        // v = 1 the top of the picture.
        image::imageops::flip_vertical_in_place(&mut image);
        let texture = Texture::from_rgba8(gl, image.width(), image.height(), image.as_raw())?;
        let mesh = Mesh::new(gl, &cube_vertices(), None, &[(0, 3), (1, 3), (2, 2)])?;
        let uniforms = CubeUniforms {
            model: cube.uniform("u_model")?,
            view_projection: cube.uniform("u_view_projection")?,
            light_direction: cube.uniform("u_light_direction")?,
            texture: cube.uniform("u_texture")?,
        };
        Ok(Self {
            gl: gl.clone(),
            backdrop,
            cube,
            mesh,
            texture,
            view_projection: CAMERA.projection(aspect, NEAR, FAR) * CAMERA.view(),
            uniforms,
            camera: CAMERA,
            aspect,
        })
    }
}

impl Scene for CubeScene {
    fn apply(&mut self, settings: &Settings) -> Result<(), String> {
        super::refuse_unsupported("cube", settings, false, true, false)?;
        if let Some(change) = &settings.camera {
            self.camera = self.camera.changed(change)?;
            self.view_projection =
                self.camera.projection(self.aspect, NEAR, FAR) * self.camera.view();
        }
        Ok(())
    }

    fn render(&mut self, frame_index: u64, target: &RenderTarget) {
        target.begin(Clear::Depth);

        self.backdrop.draw();
        let u = &self.uniforms;

        set_depth_test(&self.gl, true);
        set_cull_back_faces(&self.gl, true);
        let turn = (frame_index % FRAMES_PER_TURN) as f32 / FRAMES_PER_TURN as f32;
        let axis = Vec3::new(0.4, 1.0, 0.2).normalize();
        let model = Mat4::from_axis_angle(axis, turn * TAU);
        self.cube.bind();
        self.cube.set_mat4(&u.model, &model);
        self.cube
            .set_mat4(&u.view_projection, &self.view_projection);
        self.cube
            .set_vec3(&u.light_direction, Vec3::new(-0.4, -0.7, -0.6));
        self.cube.set_i32(&u.texture, 0);
        self.texture.bind(0);
        self.mesh.draw();
    }
}

/// 36 vertices (6 faces × 2 triangles), each position, normal, UV; counter-clockwise outside.
fn cube_vertices() -> Vec<f32> {
    // Each face: its normal and two in-plane axes (u, v) with u × v = normal, so the quad
    // corners below wind counter-clockwise seen from outside.
    let faces: [(Vec3, Vec3, Vec3); 6] = [
        (Vec3::X, Vec3::NEG_Z, Vec3::Y),
        (Vec3::NEG_X, Vec3::Z, Vec3::Y),
        (Vec3::Y, Vec3::X, Vec3::NEG_Z),
        (Vec3::NEG_Y, Vec3::X, Vec3::Z),
        (Vec3::Z, Vec3::X, Vec3::Y),
        (Vec3::NEG_Z, Vec3::NEG_X, Vec3::Y),
    ];
    let corners = [
        (0.0, 0.0),
        (1.0, 0.0),
        (1.0, 1.0),
        (0.0, 0.0),
        (1.0, 1.0),
        (0.0, 1.0),
    ];
    let mut out = Vec::with_capacity(36 * 8);
    for (normal, u, v) in faces {
        for (s, t) in corners {
            let p = (normal + u * (s * 2.0 - 1.0) + v * (t * 2.0 - 1.0)) * 0.5;
            out.extend_from_slice(&[p.x, p.y, p.z, normal.x, normal.y, normal.z, s, t]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cube_vertices;
    use glam::Vec3;

    #[test]
    fn faces_wind_counter_clockwise_from_outside() {
        let v = cube_vertices();
        for tri in v.chunks(24) {
            let p = |i: usize| Vec3::new(tri[i * 8], tri[i * 8 + 1], tri[i * 8 + 2]);
            let n = Vec3::new(tri[3], tri[4], tri[5]);
            let face_normal = (p(1) - p(0)).cross(p(2) - p(0));
            assert!(face_normal.dot(n) > 0.0, "triangle winds inward");
        }
    }
}
