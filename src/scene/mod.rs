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

/// Options every scene gets.
#[derive(Debug, Clone, Default)]
pub struct SceneOptions {
    /// A texture to use instead of the built-in one.
    pub texture: Option<PathBuf>,
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
    Ok(Box::new(CubeScene::new(context, options, aspect)?))
}
