//! A headless OpenGL context on an EGL device: no window, no X server, no environment variables.
//!
//! The recipe is glutin's `egl_device` example: enumerate EGL devices, open a platform display on
//! one, pick a config with no surface type and make a context current without a surface. What we
//! try is an ordered fallback list, logged at debug: OpenGL 3.3 core first (Mesa and NVIDIA give
//! their newest core version for it), then GLES 3.2 and 3.0. Without `--device`, hardware devices
//! are tried before Mesa's software rasterizer (`EGL_MESA_device_software`).
//!
//! [`HeadlessContext`] is `!Send` (it holds an `Rc`): the context is used on the thread that
//! created it and never leaves it. A thread may hold several (bench makes one per configuration),
//! but EGL makes one at a time current, and a GL name means something only in its own context.
//! So every GL object holds its context's [`Gl`], which knows which context it is:
//! - a GL call through an object's `Gl` while another context is current panics, rather than act
//!   on the other context's object of the same name;
//! - dropping an object deletes its name at once when its context is current; otherwise the
//!   deletion waits in the context's deferred list, run on this thread the next time the context
//!   is made current ([`HeadlessContext::make_current`]); once the context is destroyed there is
//!   nothing left to delete, since the names went with it;
//! - what must wait for something else as well (a mapped pixel-pack buffer whose frame is still
//!   leased to another thread, see [`super::readback`]) is handed to the context as a `Retire`
//!   and released on the GL thread once it can be.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_void};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use glow::HasContext;
use glutin::api::egl::context::{NotCurrentContext, PossiblyCurrentContext};
use glutin::api::egl::device::Device;
use glutin::api::egl::display::Display;
use glutin::config::{ConfigSurfaceTypes, ConfigTemplateBuilder};
use glutin::context::{ContextApi, ContextAttributesBuilder, GlProfile, Version};
use glutin::prelude::*;

use super::GlError;

/// The extension by which Mesa marks its software (llvmpipe) device.
const SOFTWARE_EXTENSION: &str = "EGL_MESA_device_software";

/// Ids for contexts, never reused, so a destroyed context's id is never current again.
static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The id of the [`HeadlessContext`] current on this thread, 0 for none. Only this module
    /// makes contexts current, and it sets this each time; it is read on every GL call, which is
    /// why it is a thread-local and not a query to EGL.
    static CURRENT_CONTEXT: Cell<u64> = const { Cell::new(0) };
}

/// A GL object's name, kept to delete it once its context is current again.
#[derive(Debug, Clone, Copy)]
pub(super) enum Name {
    Shader(glow::Shader),
    Program(glow::Program),
    Texture(glow::Texture),
    Buffer(glow::Buffer),
    VertexArray(glow::VertexArray),
    Renderbuffer(glow::Renderbuffer),
    Framebuffer(glow::Framebuffer),
    Fence(glow::Fence),
}

impl Name {
    /// Deletes the object.
    ///
    /// # Safety
    ///
    /// `gl`'s context is current on this thread, the name is one of its live objects, and
    /// nothing will use or delete it afterwards.
    unsafe fn delete(self, gl: &glow::Context) {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Name::Shader(raw) => gl.delete_shader(raw),
                Name::Program(raw) => gl.delete_program(raw),
                Name::Texture(raw) => gl.delete_texture(raw),
                Name::Buffer(raw) => gl.delete_buffer(raw),
                Name::VertexArray(raw) => gl.delete_vertex_array(raw),
                Name::Renderbuffer(raw) => gl.delete_renderbuffer(raw),
                Name::Framebuffer(raw) => gl.delete_framebuffer(raw),
                Name::Fence(raw) => gl.delete_sync(raw),
            }
        }
    }
}

/// GL resources that can go only once their context is current and something else has
/// happened too (a lease held on another thread has ended). The context keeps them and asks
/// again on its thread until [`Retire::release`] says they are done; then it drops them, still
/// current, so the GL objects they own delete themselves.
pub(super) trait Retire {
    /// Releases what needs releasing with `gl` current; returns `false` to be asked again
    /// later. Called on the GL thread only, with the context current.
    fn release(&mut self, gl: &glow::Context) -> bool;
}

/// What a context still has to do on its thread.
enum Deferred {
    /// Delete an object dropped while another context was current.
    Delete(Name),
    /// Release something once it allows (see [`Retire`]).
    Retire(Box<dyn Retire>),
}

/// `glReadPixels` as the driver exports it: glow 0.18's takes a `&mut [u8]`, which memory that
/// is not yet initialised (a loaned shared-memory sample) must not be made into.
type ReadPixelsFn = unsafe extern "system" fn(i32, i32, i32, i32, u32, u32, *mut c_void);

/// What a context and all its objects share.
struct Shared {
    gl: glow::Context,
    /// The raw `glReadPixels` entry point (see [`ReadPixelsFn`]).
    read_pixels: Option<ReadPixelsFn>,
    id: u64,
    /// Set when the [`HeadlessContext`] is dropped: its names are gone, so nothing is deleted.
    destroyed: Cell<bool>,
    /// Work for the next time the context is current, in order.
    deferred: RefCell<Vec<Deferred>>,
}

/// One context's glow function table, tied to that context. Every GL object keeps a clone, so
/// the table outlives the objects (not the context: that may be destroyed first, and then the
/// objects make no GL call at all). Dereferencing it checks that its context is the one current
/// on this thread, and panics otherwise: a GL call through it would act on whatever object
/// carries the same name in the current context.
#[derive(Clone)]
pub struct Gl(Rc<Shared>);

impl Gl {
    /// Whether this context is the one current on this thread (never again once destroyed: ids
    /// are not reused).
    pub fn is_current(&self) -> bool {
        CURRENT_CONTEXT.get() == self.0.id
    }

    /// Deletes `name`, an object of this context that its owner is dropping: now if the context
    /// is current, at its next [`HeadlessContext::make_current`] if not, and not at all once it
    /// is destroyed (its names went with it).
    pub(super) fn delete(&self, name: Name) {
        if self.is_current() {
            // SAFETY: this context is current on this thread (checked), and the caller owns the
            // name and is dropping it.
            unsafe { name.delete(&self.0.gl) }
        } else if !self.0.destroyed.get() {
            // Objects are dropped on the GL thread (`Gl` is !Send); only their context is not
            // current. Not a frame-path case: each object is deleted once.
            self.0.deferred.borrow_mut().push(Deferred::Delete(name));
        }
    }

    /// Hands `item` to the context: released now if it can be, else on this thread once it can
    /// (asked each time the deferred work runs, see [`Gl::run_deferred`]).
    pub(super) fn retire(&self, mut item: Box<dyn Retire>) {
        if self.0.destroyed.get() || (self.is_current() && item.release(&self.0.gl)) {
            return;
        }
        self.0.deferred.borrow_mut().push(Deferred::Retire(item));
    }

    /// Runs the work deferred until this context is current: deletions, and whatever retired
    /// items allow release now. Nothing (no allocation either) when there is none or the
    /// context is not current; the frame loop calls it.
    pub(super) fn run_deferred(&self) {
        if !self.is_current() || self.0.deferred.borrow().is_empty() {
            return;
        }
        // Taken out, so that what is dropped here (objects deleting themselves, at once since
        // the context is current) never finds the list borrowed.
        let mut work = std::mem::take(&mut *self.0.deferred.borrow_mut());
        work.retain_mut(|deferred| match deferred {
            Deferred::Delete(name) => {
                // SAFETY: the context is current (checked above); the name was handed over by
                // the object that owned it, in `delete`, and is deleted once, here.
                unsafe { name.delete(&self.0.gl) };
                false
            }
            Deferred::Retire(item) => !item.release(&self.0.gl),
        });
        let mut list = self.0.deferred.borrow_mut();
        work.append(&mut list);
        *list = work;
    }

    /// Reads the `width` × `height` block at (`x`, `y`) of the bound read framebuffer as
    /// `format`/`kind` into client memory at `dest` (no pixel-pack buffer may be bound), through
    /// the driver's entry point rather than glow's, so that `dest` may be uninitialised.
    ///
    /// # Safety
    /// No buffer is bound to `GL_PIXEL_PACK_BUFFER`, and `dest` is valid for writes of every
    /// byte the read produces under the current pack state (width × height × bytes per pixel
    /// with `GL_PACK_ALIGNMENT` 1).
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn read_pixels_to(
        &self,
        x: i32,
        y: i32,
        width: i32,
        height: i32,
        format: u32,
        kind: u32,
        dest: *mut u8,
    ) -> Result<(), GlError> {
        // Dereferencing checks that this context is current.
        let _ = &**self;
        let read = self.0.read_pixels.ok_or_else(|| {
            GlError::Readback("the driver exports no glReadPixels entry point".into())
        })?;
        // SAFETY: the context is current (checked above) and the entry point is its display's;
        // the caller guarantees that no pack buffer is bound, so `dest` is a client address, and
        // that it has room for every byte written.
        unsafe { read(x, y, width, height, format, kind, dest.cast()) };
        // A read that fails writes nothing; its caller must not take `dest` as written.
        // SAFETY: the context is current (checked above).
        match unsafe { self.get_error() } {
            glow::NO_ERROR => Ok(()),
            error => Err(GlError::Readback(format!(
                "glReadPixels failed with GL error 0x{error:04x}"
            ))),
        }
    }

    /// How many deferred items wait (tests).
    #[cfg(test)]
    pub(super) fn deferred_len(&self) -> usize {
        self.0.deferred.borrow().len()
    }

    /// How many values hold the shared state: the context and its objects (tests).
    #[cfg(test)]
    pub(super) fn holders(&self) -> usize {
        Rc::strong_count(&self.0)
    }
}

impl Deref for Gl {
    type Target = glow::Context;

    fn deref(&self) -> &glow::Context {
        assert!(
            self.is_current(),
            "a GL object was used while its context is not current on this thread"
        );
        &self.0.gl
    }
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

/// A surfaceless GL context and the glow function table for it.
pub struct HeadlessContext {
    // Field order is drop order: the context before its display.
    gl: Gl,
    context: PossiblyCurrentContext,
    _display: Display,
    info: ContextInfo,
}

impl HeadlessContext {
    /// Creates a context on device `index`, or on the first device that works (hardware first),
    /// and makes it current on this thread. Whatever context was current here before is not
    /// any more, whether this succeeds or not: make it current again to use its objects.
    pub fn new(index: Option<usize>) -> Result<Self, GlError> {
        let context = Self::on_first_working_device(index)?;
        CURRENT_CONTEXT.set(context.gl.0.id);
        Ok(context)
    }

    /// Makes this context the current one on this thread, and runs what its objects left for
    /// it: deletions of objects dropped while another context was current, and retired
    /// buffers whose leases have ended. (Only the tests switch contexts on one thread today.)
    #[cfg(test)]
    pub fn make_current(&self) -> Result<(), GlError> {
        self.context
            .make_current_surfaceless()
            .map_err(|e| GlError::Context(format!("eglMakeCurrent: {e}")))?;
        CURRENT_CONTEXT.set(self.gl.0.id);
        self.gl.run_deferred();
        Ok(())
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
        // The attempts below make contexts current (and drop the ones too old to use): whatever
        // was current on this thread is not, from here on.
        CURRENT_CONTEXT.set(0);
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
                let read_pixels = load_read_pixels(&display);
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
                    // Released, so that dropping it destroys it now rather than when the thread
                    // next changes contexts.
                    if let Err(e) = context.make_not_current_in_place() {
                        log::debug!("eglMakeCurrent(NO_CONTEXT) failed: {e}");
                    }
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
                    gl: Gl(Rc::new(Shared {
                        gl,
                        read_pixels,
                        id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
                        destroyed: Cell::new(false),
                        deferred: RefCell::new(Vec::new()),
                    })),
                    context,
                    _display: display,
                    info,
                });
            }
        } else {
            failures.push("no EGL config without a surface type".into());
        }
        Err(failures.join(", "))
    }

    /// The glow function table, tied to this context; GL objects keep a clone so they can
    /// delete themselves.
    pub fn gl(&self) -> &Gl {
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
        // SAFETY: the context is current on this thread (`Gl` checks); integer queries.
        let (renderbuffer, viewport) = unsafe {
            (
                self.gl.get_parameter_i32(glow::MAX_RENDERBUFFER_SIZE),
                self.gl.get_parameter_i32(glow::MAX_TEXTURE_SIZE),
            )
        };
        renderbuffer.min(viewport).max(0) as u32
    }
}

/// The driver's `glReadPixels`, if it exports one.
fn load_read_pixels(display: &Display) -> Option<ReadPixelsFn> {
    let address = display.get_proc_address(c"glReadPixels");
    // SAFETY: a non-null address EGL returns for glReadPixels is that function, whose C
    // signature `ReadPixelsFn` spells out.
    (!address.is_null())
        .then(|| unsafe { std::mem::transmute::<*const c_void, ReadPixelsFn>(address) })
}

/// A context in the share group of a [`HeadlessContext`] (it sees the same textures,
/// renderbuffers and sync objects, not the framebuffers), made on that context's thread and
/// current nowhere yet: it may go to another thread, where [`SharedContext::make_current`] makes
/// it that thread's own [`HeadlessContext`]. On llvmpipe a context that reads a texture never
/// waits for another context's rendering (each has its own rasterizer queue), which is why a
/// reader gets one.
pub struct SharedContext {
    display: Display,
    context: NotCurrentContext,
    info: ContextInfo,
}

impl HeadlessContext {
    /// Creates a context in this one's share group, of the same API, for another thread.
    pub fn share(&self) -> Result<SharedContext, GlError> {
        let builder = match self.info.dialect {
            Dialect::Core => ContextAttributesBuilder::new()
                .with_context_api(ContextApi::OpenGl(Some(Version::new(3, 3))))
                .with_profile(GlProfile::Core),
            Dialect::Es => ContextAttributesBuilder::new()
                .with_context_api(ContextApi::Gles(Some(Version::new(3, 0)))),
        };
        let attributes = builder.with_sharing(&self.context).build(None);
        let config = glutin::config::GetGlConfig::config(&self.context);
        // SAFETY: the config comes from this display and the attributes carry no window.
        let context = unsafe { self._display.create_context(&config, &attributes) }
            .map_err(|e| GlError::Context(format!("a context sharing this one's objects: {e}")))?;
        Ok(SharedContext {
            display: self._display.clone(),
            context,
            info: self.info.clone(),
        })
    }
}

impl SharedContext {
    /// Makes the context current on this thread, as this thread's [`HeadlessContext`].
    pub fn make_current(self) -> Result<HeadlessContext, GlError> {
        let SharedContext {
            display,
            context,
            info,
        } = self;
        let context = context
            .make_current_surfaceless()
            .map_err(|e| GlError::Context(format!("eglMakeCurrent: {e}")))?;
        // SAFETY: the context was just made current on this thread, and the loader returns
        // entry points of the display that created it.
        let gl = unsafe {
            glow::Context::from_loader_function_cstr(|name: &CStr| display.get_proc_address(name))
        };
        let read_pixels = load_read_pixels(&display);
        let context = HeadlessContext {
            gl: Gl(Rc::new(Shared {
                gl,
                read_pixels,
                id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
                destroyed: Cell::new(false),
                deferred: RefCell::new(Vec::new()),
            })),
            context,
            _display: display,
            info,
        };
        CURRENT_CONTEXT.set(context.gl.0.id);
        Ok(context)
    }
}

impl Drop for HeadlessContext {
    fn drop(&mut self) {
        let shared = &self.gl.0;
        // When current, the context's own work is done first: deletions and retired buffers.
        // A lease cannot outlive the context (it borrows it), so every retired buffer is free
        // and released here. When not current there is no need: destroying the context frees
        // its objects, mapped or not, and nothing can read them any more.
        let was_current = self.gl.is_current();
        self.gl.run_deferred();
        shared.destroyed.set(true);
        // What is left (deletions for a context that is not current, which its destruction
        // does for us) is dropped now: the items own objects that hold this `Gl`, a cycle that
        // would otherwise keep the shared state alive forever. Being destroyed, they make no GL
        // call.
        let left = std::mem::take(&mut *shared.deferred.borrow_mut());
        debug_assert!(
            !was_current || left.is_empty(),
            "a retired buffer was still leased when its context was destroyed"
        );
        drop(left);
        if was_current {
            CURRENT_CONTEXT.set(0);
        }
        // EGL only defers eglDestroyContext for a context that is current: without this, every
        // dropped context (bench builds one per configuration) kept its driver memory for the
        // life of the process. A context that is not current must not do it, as that would
        // release whichever context is.
        if self.context.is_current()
            && let Err(e) = self.context.make_not_current_in_place()
        {
            log::debug!("eglMakeCurrent(NO_CONTEXT) failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> HeadlessContext {
        HeadlessContext::new(None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn contexts_take_turns_on_a_thread() {
        let first = context();
        assert!(first.gl().is_current());
        // A second context on the same thread becomes the current one; the first is not
        // destroyed, only not current until it is made current again.
        let second = context();
        assert!(second.gl().is_current());
        assert!(!first.gl().is_current());
        first.make_current().unwrap_or_else(|e| panic!("{e}"));
        assert!(first.gl().is_current());
        assert!(!second.gl().is_current());
        // Dropping a context that is not current leaves the current one current.
        drop(second);
        assert!(first.gl().is_current());
        assert!(first.max_target_size() > 0);
        // Another thread has its own current context, whatever this one has.
        let other = std::thread::spawn(|| HeadlessContext::new(None).map(|c| c.info().clone()));
        assert!(other.join().expect("the thread does not panic").is_ok());
        assert!(first.gl().is_current());
        // Dropping the current one leaves none current, and a new one can be made, as bench
        // does between configurations.
        drop(first);
        let again = context();
        assert!(again.gl().is_current());
        assert!(!again.info().renderer.is_empty());
    }
}
