//! Scenes: what gets drawn into the render target for a given frame index.
//!
//! A scene owns its GL objects and draws through the safe wrappers in [`crate::gl::objects`]. Time
//! is the frame index, never the wall clock, so frame N is the same image on every run, whatever
//! the pacing, the PBO count or the number of clients.
//!
//! [`SceneSource`] says what to draw: a built-in by name (`cube`, `pattern`) or a file whose
//! extension says what it is (`.frag`/`.glsl` shader, `.gltf`/`.glb` model). Loading never panics
//! on bad input: every failure is a [`SceneError`] that names the file.

mod backdrop;
mod cube;
mod model;
mod pattern;
mod shader;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::control::Settings;
use crate::gl::GlError;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::RenderTarget;

pub use cube::CubeScene;
pub use model::GltfScene;
pub use pattern::PatternScene;
pub use shader::ShaderScene;

/// Why a scene could not be built. Messages name the file; the cause is the error's `source`,
/// which `main` prints after it (`{:#}`), so messages do not repeat it.
#[derive(Debug, Error)]
pub enum SceneError {
    /// A texture file could not be read.
    #[error("cannot read texture {path}")]
    ReadTexture {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A texture file is not an image the `image` crate can decode, or its header declares a
    /// size larger than the driver's texture limit.
    #[error("cannot decode texture {name}")]
    DecodeTexture {
        /// The file, or the built-in asset's name.
        name: String,
        /// The decoder's error, or the size refused.
        source: crate::capture::ImageLoadError,
    },
    /// A scene file (shader or glTF) could not be read.
    #[error("cannot read scene file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A glTF file is not valid glTF 2.0 (bad JSON, bad GLB container, failed validation).
    #[error("{path} is not a valid glTF 2.0 file: {message}")]
    CorruptGltf {
        /// The .gltf or .glb file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A buffer or image that a glTF file references could not be read or decoded.
    #[error("{path}: cannot load {resource}: {message}")]
    GltfResource {
        /// The .gltf or .glb file.
        path: PathBuf,
        /// What it references: a file path, or "buffer N" / "image N" when it is embedded.
        resource: String,
        /// Why it could not be loaded.
        message: String,
    },
    /// Building the scene's GL objects failed (a shader, most likely).
    #[error(transparent)]
    Gl(#[from] GlError),
}

/// Which scene to draw: a built-in by name, or a file whose extension says what it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SceneSource {
    /// The built-in lit, textured, rotating cube.
    #[default]
    Cube,
    /// The built-in test pattern: the frame index in black and white cells, colour bars.
    Pattern,
    /// A Shadertoy-style fragment shader file (`.frag`, `.glsl`).
    Shader(PathBuf),
    /// A glTF 2.0 model (`.gltf`, `.glb`).
    Gltf(PathBuf),
}

impl std::str::FromStr for SceneSource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let extension = Path::new(text)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match (text, extension.as_deref()) {
            ("cube", _) => Ok(SceneSource::Cube),
            ("pattern", _) => Ok(SceneSource::Pattern),
            (path, Some("frag" | "glsl")) => Ok(SceneSource::Shader(PathBuf::from(path))),
            (path, Some("gltf" | "glb")) => Ok(SceneSource::Gltf(PathBuf::from(path))),
            (other, _) => Err(format!(
                "unknown scene '{other}' (built-in: cube, pattern; files: .frag, .glsl, .gltf, .glb)"
            )),
        }
    }
}

/// Options every scene gets.
#[derive(Debug, Clone, Default)]
pub struct SceneOptions {
    /// What to draw.
    pub source: SceneSource,
    /// A texture to use instead of the built-in one (cube).
    pub texture: Option<PathBuf>,
    /// Frames per second the stream is paced at, if it is; scenes with a notion of time (shader
    /// scenes' iTime) use frame / fps, or frame / 60 when unpaced. Never the wall clock.
    pub frame_rate: Option<f64>,
}

/// Something that can draw frame N.
pub trait Scene {
    /// Draws frame `frame_index` into `target` (which it binds and clears itself).
    fn render(&mut self, frame_index: u64, target: &RenderTarget);

    /// Applies a control request's settings, which persist until changed: all of them or, when
    /// one cannot be applied (a uniform it does not declare, a value of the wrong type, a node
    /// it does not have), none, with one line saying why.
    fn apply(&mut self, settings: &Settings) -> Result<(), String>;
}

/// The one-line refusal of what a scene has no notion of: `uniforms`, `camera` or `nodes` set
/// when `scene` has none of them (the flags say which it does have).
pub(crate) fn refuse_unsupported(
    scene: &str,
    settings: &Settings,
    uniforms: bool,
    camera: bool,
    nodes: bool,
) -> Result<(), String> {
    if !uniforms && let Some((name, _)) = settings.uniforms.first() {
        return Err(format!(
            "uniform {name}: the {scene} scene has no settable uniforms (a shader scene does)"
        ));
    }
    if !camera && settings.camera.is_some() {
        return Err(format!(
            "camera: the {scene} scene has no camera (the cube and glTF scenes do)"
        ));
    }
    if !nodes && let Some((name, _)) = settings.nodes.first() {
        return Err(format!(
            "node {name:?}: the {scene} scene has no nodes (a glTF scene does)"
        ));
    }
    Ok(())
}

/// A camera a request may steer: where it is, what it looks at, which way is up, and its
/// vertical field of view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SteeredCamera {
    pub eye: glam::Vec3,
    pub target: glam::Vec3,
    pub up: glam::Vec3,
    pub fov_deg: f32,
}

impl SteeredCamera {
    /// This camera with `change` applied; an error when eye and target coincide or up is
    /// along the line of sight (no view can be made of them).
    pub fn changed(&self, change: &crate::control::CameraChange) -> Result<Self, String> {
        let next = Self {
            eye: change.eye.unwrap_or(self.eye),
            target: change.target.unwrap_or(self.target),
            up: change.up.unwrap_or(self.up),
            fov_deg: change.fov_deg.unwrap_or(self.fov_deg),
        };
        let forward = next.target - next.eye;
        if forward.length_squared() < 1e-12 {
            return Err("camera: eye and target are the same point".into());
        }
        if forward
            .normalize()
            .cross(next.up.normalize())
            .length_squared()
            < 1e-8
        {
            return Err("camera: up is along the line of sight".into());
        }
        Ok(next)
    }

    /// The view matrix.
    pub fn view(&self) -> glam::Mat4 {
        glam::camera::rh::view::look_at_mat4(self.eye, self.target, self.up)
    }

    /// The projection for `aspect`, between `near` and `far`.
    pub fn projection(&self, aspect: f32, near: f32, far: f32) -> glam::Mat4 {
        glam::camera::rh::proj::opengl::perspective(self.fov_deg.to_radians(), aspect, near, far)
    }
}

/// Builds the scene `options.source` names; `aspect` is the target's width / height.
pub fn build(
    context: &HeadlessContext,
    options: &SceneOptions,
    aspect: f32,
) -> Result<Box<dyn Scene>, SceneError> {
    match &options.source {
        SceneSource::Cube => Ok(Box::new(CubeScene::new(context, options, aspect)?)),
        SceneSource::Pattern => Ok(Box::new(PatternScene::new(context)?)),
        SceneSource::Shader(path) => Ok(Box::new(ShaderScene::new(context, options, path)?)),
        SceneSource::Gltf(path) => Ok(Box::new(contain_panics(path, || {
            GltfScene::new(context, path, aspect)
        })?)),
    }
}

/// Runs a loader of untrusted files, turning a panic inside a parsing crate into an error that
/// names the file. The gltf crate validates a document's structure but may still index out of
/// bounds on, say, an accessor that runs past its buffer; a user's file must not crash us. The
/// default panic message is suppressed for this thread while the loader runs: the hook that does
/// so is installed once and hands every other panic to the previous hook, so nothing swaps the
/// process-wide hook under another thread (tests run in parallel).
fn contain_panics<T>(
    path: &std::path::Path,
    load: impl FnOnce() -> Result<T, SceneError>,
) -> Result<T, SceneError> {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load));
    QUIET.with(|quiet| quiet.set(false));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the loader failed".into());
        Err(SceneError::CorruptGltf {
            path: path.to_path_buf(),
            message,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::SceneSource;
    use std::path::PathBuf;

    #[test]
    fn names_and_extensions_pick_the_scene() {
        let parse = |s: &str| s.parse::<SceneSource>();
        assert_eq!(parse("cube"), Ok(SceneSource::Cube));
        assert_eq!(parse("pattern"), Ok(SceneSource::Pattern));
        assert_eq!(
            parse("dir/wave.frag"),
            Ok(SceneSource::Shader(PathBuf::from("dir/wave.frag")))
        );
        assert_eq!(
            parse("a.GLSL"),
            Ok(SceneSource::Shader(PathBuf::from("a.GLSL")))
        );
        assert_eq!(
            parse("m.gltf"),
            Ok(SceneSource::Gltf(PathBuf::from("m.gltf")))
        );
        assert_eq!(
            parse("m.glb"),
            Ok(SceneSource::Gltf(PathBuf::from("m.glb")))
        );
        let refused = parse("teapot").unwrap_err();
        let contained =
            super::contain_panics(std::path::Path::new("bad.glb"), || -> Result<(), _> {
                panic!("index out of bounds")
            });
        assert!(
            matches!(contained, Err(super::SceneError::CorruptGltf { ref message, .. }) if message == "index out of bounds")
        );
        assert!(refused.contains("unknown scene 'teapot'"), "{refused}");
        assert!(parse("model.obj").is_err());
    }
}
