//! Scenes: what gets drawn into the render target for a given frame index.
//!
//! A scene owns its GL objects and draws through the safe wrappers in [`crate::gl::objects`]. Time
//! is the frame index, never the wall clock, so frame N is the same image on every run, whatever
//! the pacing, the PBO count or the number of clients.

mod cube;

use std::path::PathBuf;

use thiserror::Error;

use crate::gl::GlError;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::RenderTarget;

pub use cube::CubeScene;

/// Why a scene could not be built.
#[derive(Debug, Error)]
pub enum SceneError {
    /// A texture file could not be read.
    #[error("cannot read texture {path}: {source}")]
    ReadTexture {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A texture file is not an image the `image` crate can decode.
    #[error("cannot decode texture {name}: {source}")]
    DecodeTexture {
        /// The file, or the built-in asset's name.
        name: String,
        /// The decoder's error.
        source: image::ImageError,
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
}

impl std::str::FromStr for SceneSource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cube" => Ok(SceneSource::Cube),
            other => Err(format!("unknown scene '{other}' (built-in: cube)")),
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
}

/// Builds the default scene.
pub fn build(
    context: &HeadlessContext,
    options: &SceneOptions,
    aspect: f32,
) -> Result<Box<dyn Scene>, SceneError> {
    match &options.source {
        SceneSource::Cube => Ok(Box::new(CubeScene::new(context, options, aspect)?)),
    }
}
