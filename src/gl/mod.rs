//! Everything that touches OpenGL or EGL lives here, and nothing here touches a socket.
//!
//! The context ([`context`]) is created headless on an EGL device and stays on the thread that made
//! it: every type in this module that holds GL state holds its context's [`context::Gl`] (an
//! `Rc`), so none of them is `Send`, and each knows its context: a GL call through an object whose
//! context is not the current one panics instead of reaching another context's object. GL objects
//! ([`objects`]) own their handle and delete it in `Drop`, at once when their context is current,
//! else when it next is (nothing to do once it is destroyed). The readback ring
//! ([`readback`]) is the one way bytes leave the GPU: it hands out [`readback::FrameLease`]s, the
//! only GL-derived values that may cross threads, and it never reuses or unmaps a buffer while a
//! lease on it is alive.
//!
//! All `unsafe` in the crate is in this module; every block names the invariant it relies on.

pub mod context;
pub mod objects;
pub mod output;
pub mod readback;

use thiserror::Error;

/// Failures of the GL layer. Every one of them is fatal to the pipeline that hit it.
#[derive(Debug, Error)]
pub enum GlError {
    /// libEGL could not be loaded, or it cannot enumerate devices.
    #[error(
        "no usable EGL found ({0}); install Mesa's EGL (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)"
    )]
    NoEgl(String),
    /// EGL loaded but reported no device at all.
    #[error(
        "no EGL device found; install Mesa's EGL (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)"
    )]
    NoDevice,
    /// `--device N` named a device that does not exist.
    #[error("EGL device {index} does not exist (found {count}; see `glstream devices`)")]
    DeviceOutOfRange {
        /// The index that was asked for.
        index: usize,
        /// How many devices EGL enumerated.
        count: usize,
    },
    /// Every display/config/context combination on the chosen device(s) failed.
    #[error("could not create a headless OpenGL 3.3 core or GLES 3 context: {0}")]
    Context(String),
    /// A shader stage failed to compile; the log is the driver's, with its line numbers.
    #[error("{name}: {stage} shader does not compile: {log}")]
    Compile {
        /// Which shader program (scene name or file).
        name: String,
        /// "vertex" or "fragment".
        stage: &'static str,
        /// The driver's info log, trimmed to one line per error.
        log: String,
    },
    /// A program failed to link.
    #[error("{name}: shader program does not link: {log}")]
    Link {
        /// Which shader program.
        name: String,
        /// The driver's info log.
        log: String,
    },
    /// One of our own shaders has no active uniform by this name: a typo, or a uniform the
    /// compiler removed because nothing uses it. (User shaders' uniforms are optional.)
    #[error("{program}: the shader has no active uniform {name}")]
    MissingUniform {
        /// Which shader program.
        program: String,
        /// The uniform that was looked up.
        name: String,
    },
    /// The render target is not complete; the status is the GL enum in hex.
    #[error("framebuffer incomplete (status 0x{0:04x})")]
    Framebuffer(u32),
    /// The driver cannot make a target of the requested size.
    #[error("{width}x{height} exceeds this driver's largest render target ({max}x{max})")]
    TooLarge {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
        /// GL_MAX_RENDERBUFFER_SIZE / GL_MAX_TEXTURE_SIZE, whichever is smaller.
        max: u32,
    },
    /// A texture image is larger than the driver takes.
    #[error("a {width}x{height} texture exceeds this driver's largest ({max}x{max})")]
    TextureTooLarge {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
        /// GL_MAX_TEXTURE_SIZE.
        max: u32,
    },
    /// A GL object could not be created (the driver's message).
    #[error("could not create GL {what}: {message}")]
    Create {
        /// The kind of object.
        what: &'static str,
        /// The driver's message.
        message: String,
    },
    /// Mapping a pixel-pack buffer failed, or the driver reported an error after a readback.
    #[error("readback failed: {0}")]
    Readback(String),
}
