//! A headless OpenGL context on an EGL device: no window, no X server, no environment variables.
//!
//! The recipe is glutin's `egl_device` example: enumerate EGL devices, open a platform display on
//! one, pick a config with no surface type and make a context current without a surface. What we
//! try is an ordered fallback list, logged at debug: OpenGL 3.3 core first (Mesa and NVIDIA give
//! their newest core version for it), then GLES 3.2 and 3.0. Without `--device`, hardware devices
//! are tried before Mesa's software rasterizer (`EGL_MESA_device_software`).
//!
//! [`HeadlessContext`] is `!Send` (it holds an `Rc`): the context is current on the thread that
//! created it and never leaves it. A thread has at most one: EGL keeps one current context per
//! thread, so a second would silently take the first one's place, and the first one's objects
//! would then act on the wrong context. [`HeadlessContext::new`] refuses instead
//! ([`GlError::ContextAlreadyCurrent`]); dropping the context frees the thread for another.

use std::cell::Cell;
use std::ffi::CStr;
use std::rc::Rc;

use glow::HasContext;
use glutin::api::egl::context::PossiblyCurrentContext;
use glutin::api::egl::device::Device;
use glutin::api::egl::display::Display;
use glutin::config::{ConfigSurfaceTypes, ConfigTemplateBuilder};
use glutin::context::{ContextApi, ContextAttributesBuilder, GlProfile, Version};
use glutin::prelude::*;

use super::GlError;

/// The extension by which Mesa marks its software (llvmpipe) device.
const SOFTWARE_EXTENSION: &str = "EGL_MESA_device_software";

thread_local! {
    /// Whether a [`HeadlessContext`] is alive on this thread. It is set only once a context is
    /// current and cleared by its `Drop`, which runs on this thread too (the type is `!Send`).
    static CONTEXT_ON_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// What `glstream devices` prints about one EGL device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Position in EGL's enumeration; what `--device` takes.
    pub index: usize,
    /// Whether this is Mesa's software rasterizer.
    pub software: bool,
    /// The DRM render node, when the device has one.
    pub render_node: Option<String>,
    /// The device's EGL extensions, sorted.
    pub extensions: Vec<String>,
}

fn query_devices() -> Result<Vec<Device>, GlError> {
    let devices: Vec<Device> = Device::query_devices()
        .map_err(|e| GlError::NoEgl(e.to_string()))?
        .collect();
    if devices.is_empty() {
        return Err(GlError::NoDevice);
    }
    Ok(devices)
}

fn is_software(device: &Device) -> bool {
    device.extensions().contains(SOFTWARE_EXTENSION)
}

/// Lists the EGL devices in enumeration order.
pub fn list_devices() -> Result<Vec<DeviceInfo>, GlError> {
    Ok(query_devices()?
        .iter()
        .enumerate()
        .map(|(index, device)| {
            let mut extensions: Vec<String> =
                device.extensions().iter().map(|s| s.to_string()).collect();
            extensions.sort();
            DeviceInfo {
                index,
                software: is_software(device),
                render_node: device
                    .drm_render_device_node_path()
                    .map(|p| p.display().to_string()),
                extensions,
            }
        })
        .collect())
}

/// Which GL dialect the context speaks; shaders are written for both and get their `#version`
/// line from [`HeadlessContext::glsl_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Desktop OpenGL, core profile, 3.3 or newer.
    Core,
    /// OpenGL ES 3.0 or newer.
    Es,
}

/// Facts about the context, logged at start and used by benchmarks.
#[derive(Debug, Clone)]
pub struct ContextInfo {
    /// Index of the EGL device in use.
    pub device_index: usize,
    /// Whether the device is Mesa's software rasterizer.
    pub software: bool,
    /// GL_VERSION.
    pub version: String,
    /// GL_RENDERER.
    pub renderer: String,
    /// GL_VENDOR.
    pub vendor: String,
    /// Desktop GL or GLES.
    pub dialect: Dialect,
}

/// A current, surfaceless GL context and the glow function table for it.
pub struct HeadlessContext {
    // Field order is drop order: the function table goes first, the context before its display.
    gl: Rc<glow::Context>,
    _context: PossiblyCurrentContext,
    _display: Display,
    info: ContextInfo,
}

impl HeadlessContext {
    /// Creates a context on device `index`, or on the first device that works (hardware first),
    /// and makes it current on this thread, which must not have one already
    /// ([`GlError::ContextAlreadyCurrent`]).
    pub fn new(index: Option<usize>) -> Result<Self, GlError> {
        if CONTEXT_ON_THIS_THREAD.get() {
            return Err(GlError::ContextAlreadyCurrent);
        }
        let context = Self::on_first_working_device(index)?;
        CONTEXT_ON_THIS_THREAD.set(true);
        Ok(context)
    }

    fn on_first_working_device(index: Option<usize>) -> Result<Self, GlError> {
        let devices = query_devices()?;
        let order: Vec<usize> = match index {
            Some(i) if i >= devices.len() => {
                return Err(GlError::DeviceOutOfRange {
                    index: i,
                    count: devices.len(),
                });
            }
            Some(i) => vec![i],
            None => {
                let mut order: Vec<usize> = (0..devices.len()).collect();
                order.sort_by_key(|&i| is_software(&devices[i]));
                order
            }
        };
        let mut failures = Vec::new();
        for i in order {
            match Self::on_device(&devices[i], i) {
                Ok(context) => return Ok(context),
                Err(message) => {
                    log::debug!("EGL device {i}: {message}");
                    failures.push(format!("device {i}: {message}"));
                }
            }
        }
        Err(GlError::Context(failures.join("; ")))
    }

    fn on_device(device: &Device, index: usize) -> Result<Self, String> {
        // SAFETY: `None` asks for no DRM master fd, the only raw pointer the call could take.
        let display = unsafe { Display::with_device(device, None) }
            .map_err(|e| format!("eglGetPlatformDisplay: {e}"))?;
        let template = ConfigTemplateBuilder::new()
            .with_surface_type(ConfigSurfaceTypes::empty())
            .build();
        // SAFETY: the template holds no raw window handle, so there is nothing to outlive.
        let configs: Vec<_> = unsafe { display.find_configs(template) }
            .map_err(|e| format!("eglChooseConfig: {e}"))?
            .collect();
        let attempts = [
            (
                "OpenGL 3.3 core",
                ContextApi::OpenGl(Some(Version::new(3, 3))),
                Some(GlProfile::Core),
            ),
            ("GLES 3.2", ContextApi::Gles(Some(Version::new(3, 2))), None),
            ("GLES 3.0", ContextApi::Gles(Some(Version::new(3, 0))), None),
        ];
        let mut failures = Vec::new();
        // Mesa lists dozens of equivalent configs; if the first cannot make any context, the
        // rest will not either, and trying them all only slows the error down.
        if let Some(config) = configs.first() {
            for (label, api, profile) in &attempts {
                let mut builder = ContextAttributesBuilder::new().with_context_api(*api);
                if let Some(profile) = profile {
                    builder = builder.with_profile(*profile);
                }
                let attributes = builder.build(None);
                // SAFETY: the config comes from this display and the attributes carry no window.
                let created = unsafe { display.create_context(config, &attributes) };
                let context = match created.and_then(|c| c.make_current_surfaceless()) {
                    Ok(context) => context,
                    Err(e) => {
                        log::debug!("EGL device {index}: {label}: {e}");
                        failures.push(format!("{label}: {e}"));
                        continue;
                    }
                };
                log::debug!("EGL device {index}: {label}: context current");
                // SAFETY: the context was just made current on this thread, and the loader
                // returns entry points of the display that created it.
                let gl = unsafe {
                    glow::Context::from_loader_function_cstr(|name: &CStr| {
                        display.get_proc_address(name)
                    })
                };
                let dialect = if gl.version().is_embedded {
                    Dialect::Es
                } else {
                    Dialect::Core
                };
                let version = gl.version().clone();
                let too_old = match dialect {
                    Dialect::Core => (version.major, version.minor) < (3, 3),
                    Dialect::Es => version.major < 3,
                };
                if too_old {
                    failures.push(format!(
                        "{label}: got {}.{}, too old",
                        version.major, version.minor
                    ));
                    continue;
                }
                // SAFETY: the context is current; these queries take no pointers.
                let (version, renderer, vendor) = unsafe {
                    (
                        gl.get_parameter_string(glow::VERSION),
                        gl.get_parameter_string(glow::RENDERER),
                        gl.get_parameter_string(glow::VENDOR),
                    )
                };
                let info = ContextInfo {
                    device_index: index,
                    software: is_software(device),
                    version,
                    renderer,
                    vendor,
                    dialect,
                };
                return Ok(Self {
                    gl: Rc::new(gl),
                    _context: context,
                    _display: display,
                    info,
                });
            }
        } else {
            failures.push("no EGL config without a surface type".into());
        }
        Err(failures.join(", "))
    }

    /// The glow function table; GL objects keep a clone so they can delete themselves.
    pub fn gl(&self) -> &Rc<glow::Context> {
        &self.gl
    }

    /// What this context is.
    pub fn info(&self) -> &ContextInfo {
        &self.info
    }

    /// The first lines every shader gets: `#version` and, for GLES, default precisions.
    pub fn glsl_header(&self) -> &'static str {
        match self.info.dialect {
            Dialect::Core => "#version 330 core\n",
            Dialect::Es => "#version 300 es\nprecision highp float;\nprecision highp int;\n",
        }
    }

    /// The largest width or height a render target may have on this driver.
    pub fn max_target_size(&self) -> u32 {
        // SAFETY: the context is current on this thread (it is !Send); integer queries.
        let (renderbuffer, viewport) = unsafe {
            (
                self.gl.get_parameter_i32(glow::MAX_RENDERBUFFER_SIZE),
                self.gl.get_parameter_i32(glow::MAX_TEXTURE_SIZE),
            )
        };
        renderbuffer.min(viewport).max(0) as u32
    }
}

impl Drop for HeadlessContext {
    fn drop(&mut self) {
        // EGL only defers eglDestroyContext for a context that is current, and ours always is:
        // without this, every dropped context (bench builds one per configuration) kept its
        // driver memory for the life of the process.
        if let Err(e) = self._context.make_not_current_in_place() {
            log::debug!("eglMakeCurrent(NO_CONTEXT) failed: {e}");
        }
        CONTEXT_ON_THIS_THREAD.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> HeadlessContext {
        HeadlessContext::new(None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_thread_has_one_context_at_a_time() {
        let first = context();
        let second = HeadlessContext::new(None);
        assert!(
            matches!(second, Err(GlError::ContextAlreadyCurrent)),
            "{:?}",
            second.err()
        );
        // Another thread has its own current context, whatever this one has.
        let other = std::thread::spawn(|| HeadlessContext::new(None).map(|c| c.info().clone()));
        assert!(other.join().expect("the thread does not panic").is_ok());
        // Dropping the first frees the thread, as bench relies on between configurations.
        drop(first);
        let again = context();
        assert!(!again.info().renderer.is_empty());
    }
}
