//! glTF 2.0 scenes (`.gltf` with external or embedded buffers, `.glb`), drawn simply.
//!
//! What is drawn: every triangle primitive of every mesh in the default scene (else the first),
//! placed by the node hierarchy's transforms; positions, normals (computed when absent), first UV
//! set and indices; the material's base colour factor and texture and its emissive factor, lit by
//! one directional light that sits above-left of the camera, plus ambient. Everything else is
//! skipped with a warning, never an error: skins (drawn in bind pose), morph targets (base
//! shape), animations, non-triangle primitives, extensions, other texture slots.
//!
//! The camera: the first camera met in the scene's node order, its projection's aspect fitted to
//! the output, drawn still (every frame the same image). Without one, a camera framed on the
//! scene's bounds orbits it once every [`FRAMES_PER_ORBIT`] frames, so frame N is a pure function
//! of N like every scene here.
//!
//! Every failure to read the file, a buffer or a texture is a [`SceneError`] naming the file.
//!
//! The file is untrusted input. A URI it references is either a `data:` URI or a relative path
//! that resolves (symlinks followed) to a regular file inside the model's own folder; anything
//! else (`..` out of it, absolute paths, `file:` and other schemes, FIFOs, devices) is refused.
//! A buffer file must hold at least its declared `byteLength`, and only that many bytes are read.
//! Every accessor drawn is checked, with checked arithmetic, to lie inside the bytes loaded for
//! it before anything is allocated for its elements, and an image's declared size is checked
//! against the driver's texture limit before it is decoded.

use std::collections::HashMap;
use std::f32::consts::TAU;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use glam::{Mat3, Mat4, Quat, Vec3, Vec4, camera};
use gltf::Semantic;
use gltf::mesh::Mode;

use super::backdrop::Backdrop;
use super::{Scene, SceneError, SteeredCamera};
use crate::capture;
use crate::control::Settings;
use crate::gl::context::{Gl, HeadlessContext};
use crate::gl::objects::{Clear, Mesh, Program, RenderTarget, Texture, Uniform, set_depth_test};

/// One turn of the orbiting camera, for models without a camera of their own.
pub const FRAMES_PER_ORBIT: u64 = 360;
/// Vertical field of view of the framing camera.
const FRAMING_FOV_RADIANS: f32 = 45.0 * std::f32::consts::PI / 180.0;
/// The framing camera looks down on the model from this far above the horizon.
const ORBIT_ELEVATION_RADIANS: f32 = 20.0 * std::f32::consts::PI / 180.0;
/// The light's direction in view space: travelling away from the viewer, down and to the right.
const LIGHT_IN_VIEW: Vec3 = Vec3::new(0.45, -0.6, -0.65);

/// One node of the hierarchy, in depth-first document order (a parent before its children), with
/// the local transform control requests may change.
struct NodeSlot {
    name: Option<String>,
    /// The parent's slot; `None` for a scene root.
    parent: Option<usize>,
    translation: Vec3,
    rotation: Quat,
    scale: Vec3,
}

impl NodeSlot {
    fn local(&self) -> Mat4 {
        Mat4::from_scale_rotation_translation(self.scale, self.rotation, self.translation)
    }
}

/// One primitive ready to draw.
struct Draw {
    /// The node it belongs to (its slot).
    node: usize,
    mesh: Mesh,
    model: Mat4,
    normal_matrix: Mat4,
    base_color: Vec4,
    emissive: Vec3,
    /// Index into [`GltfScene::textures`]; `None` samples the white texture.
    texture: Option<usize>,
}

/// Where the camera is.
enum CameraRig {
    /// The file's own camera: fixed.
    Fixed { view: Mat4, projection: Mat4 },
    /// Framed on the bounds, orbiting about the vertical axis through their centre.
    Orbit {
        center: Vec3,
        distance: f32,
        projection: Mat4,
    },
    /// Where control requests put it.
    Steered {
        camera: SteeredCamera,
        view: Mat4,
        projection: Mat4,
    },
}

impl CameraRig {
    fn view(&self, frame_index: u64) -> Mat4 {
        match self {
            CameraRig::Fixed { view, .. } | CameraRig::Steered { view, .. } => *view,
            CameraRig::Orbit {
                center, distance, ..
            } => {
                let angle = (frame_index % FRAMES_PER_ORBIT) as f32 / FRAMES_PER_ORBIT as f32 * TAU;
                let (sin_e, cos_e) = ORBIT_ELEVATION_RADIANS.sin_cos();
                let offset = Vec3::new(angle.sin() * cos_e, sin_e, angle.cos() * cos_e);
                camera::rh::view::look_at_mat4(*center + offset * *distance, *center, Vec3::Y)
            }
        }
    }

    fn projection(&self) -> Mat4 {
        match self {
            CameraRig::Fixed { projection, .. }
            | CameraRig::Orbit { projection, .. }
            | CameraRig::Steered { projection, .. } => *projection,
        }
    }
}

/// A loaded glTF scene's GL objects and camera.
pub struct GltfScene {
    gl: Gl,
    backdrop: Backdrop,
    program: Program,
    draws: Vec<Draw>,
    textures: Vec<Texture>,
    white: Texture,
    camera: CameraRig,
    uniforms: GltfUniforms,
    /// The file's name, for errors.
    name: String,
    /// The node hierarchy, for requests that move nodes.
    nodes: Vec<NodeSlot>,
    aspect: f32,
    /// The depth range a steered camera uses: the scene's bounds, seen from anywhere near.
    near: f32,
    far: f32,
}

/// Uniform locations, looked up once so that a frame sets them without a name lookup (which
/// allocates in glow).
struct GltfUniforms {
    view_projection: Uniform,
    light_direction: Uniform,
    base_color_texture: Uniform,
    model: Uniform,
    normal_matrix: Uniform,
    base_color_factor: Uniform,
    emissive: Uniform,
}

/// Bounds of the transformed positions seen so far.
struct Bounds {
    min: Vec3,
    max: Vec3,
}

impl Bounds {
    fn empty() -> Self {
        Self {
            min: Vec3::splat(f32::INFINITY),
            max: Vec3::splat(f32::NEG_INFINITY),
        }
    }

    fn add(&mut self, point: Vec3) {
        if point.is_finite() {
            self.min = self.min.min(point);
            self.max = self.max.max(point);
        }
    }

    /// Centre and radius of the bounding sphere; a unit sphere at the origin when empty.
    fn sphere(&self) -> (Vec3, f32) {
        if self.min.x > self.max.x {
            return (Vec3::ZERO, 1.0);
        }
        let center = (self.min + self.max) * 0.5;
        (center, ((self.max - self.min).length() * 0.5).max(1e-3))
    }
}

/// What walking the node tree collects.
struct Collected<'a> {
    draws: Vec<Draw>,
    nodes: Vec<NodeSlot>,
    bounds: Bounds,
    camera: Option<(gltf::Camera<'a>, Mat4)>,
    /// glTF image index → index into the scene's texture list.
    textures_by_image: HashMap<usize, usize>,
    textures: Vec<Texture>,
}

/// Everything the loader needs while walking one file.
struct Loader<'a> {
    gl: &'a Gl,
    path: &'a Path,
    base: &'a Path,
    /// `base`, canonical: every file the model references must resolve to a path under it.
    root: PathBuf,
    /// Each buffer's bytes, exactly its declared length (or more, for a GLB chunk's padding).
    buffers: Vec<Vec<u8>>,
}

impl GltfScene {
    /// Loads `path` and uploads its meshes and textures; `aspect` is the output's width / height.
    pub fn new(context: &HeadlessContext, path: &Path, aspect: f32) -> Result<Self, SceneError> {
        let gl = context.gl();
        let header = context.glsl_header();
        let program = Program::new(
            gl,
            "shaders/gltf",
            header,
            include_str!("../../shaders/gltf.vert"),
            include_str!("../../shaders/gltf.frag"),
        )?;
        let backdrop = Backdrop::new(
            context,
            Vec3::new(0.10, 0.10, 0.12),
            Vec3::new(0.45, 0.47, 0.52),
        )?;

        let bytes = std::fs::read(path).map_err(|source| SceneError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let gltf::Gltf { document, mut blob } =
            gltf::Gltf::from_slice(&bytes).map_err(|e| SceneError::CorruptGltf {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        for extension in document.extensions_used() {
            log::warn!(
                "{}: extension {extension} is not supported; ignored",
                path.display()
            );
        }
        if document.animations().next().is_some() {
            log::warn!(
                "{}: animations are not supported; drawn at rest",
                path.display()
            );
        }
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let root = std::fs::canonicalize(base).map_err(|source| SceneError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut buffers = Vec::new();
        for buffer in document.buffers() {
            let data = load_buffer(&buffer, &mut blob, &root).map_err(|message| {
                SceneError::GltfResource {
                    path: path.to_path_buf(),
                    resource: describe_buffer(&buffer, base),
                    message,
                }
            })?;
            buffers.push(data);
        }
        let loader = Loader {
            gl,
            path,
            base,
            root,
            buffers,
        };

        let mut collected = Collected {
            draws: Vec::new(),
            nodes: Vec::new(),
            bounds: Bounds::empty(),
            camera: None,
            textures_by_image: HashMap::new(),
            textures: Vec::new(),
        };
        match document
            .default_scene()
            .or_else(|| document.scenes().next())
        {
            Some(scene) => {
                let mut visited = vec![false; document.nodes().len()];
                for node in scene.nodes() {
                    loader.visit(node, Mat4::IDENTITY, &mut visited, &mut collected)?;
                }
            }
            None => log::warn!("{}: no scene; nothing to draw", path.display()),
        }
        if collected.draws.is_empty() {
            log::warn!("{}: no triangles to draw", path.display());
        }

        let camera = match &collected.camera {
            Some((camera, world)) => own_camera(camera, world, aspect, &collected.bounds),
            None => framing_camera(&collected.bounds, aspect),
        };
        let uniforms = GltfUniforms {
            view_projection: program.uniform("u_view_projection")?,
            light_direction: program.uniform("u_light_direction")?,
            base_color_texture: program.uniform("u_base_color_texture")?,
            model: program.uniform("u_model")?,
            normal_matrix: program.uniform("u_normal_matrix")?,
            base_color_factor: program.uniform("u_base_color_factor")?,
            emissive: program.uniform("u_emissive")?,
        };
        let (_, radius) = collected.bounds.sphere();
        let radius = positive_or(radius, 1.0);
        Ok(Self {
            gl: gl.clone(),
            uniforms,
            backdrop,
            program,
            draws: collected.draws,
            textures: collected.textures,
            white: Texture::from_rgba8(gl, 1, 1, &[255; 4])?,
            camera,
            name: path.display().to_string(),
            nodes: collected.nodes,
            aspect,
            near: radius * 1e-3,
            far: radius * 1e3,
        })
    }
}

impl<'a> Loader<'a> {
    /// Collects `node` and its descendants, depth first in document order; `parent` is the
    /// parent's world matrix. The walk keeps its own stack: a valid file may nest nodes
    /// thousands deep, and recursion would overflow the thread's stack (an abort, not an error).
    fn visit<'d>(
        &self,
        node: gltf::Node<'d>,
        parent: Mat4,
        visited: &mut [bool],
        out: &mut Collected<'d>,
    ) -> Result<(), SceneError> {
        let mut stack = vec![(node, parent, None)];
        while let Some((node, parent, parent_slot)) = stack.pop() {
            // glTF forbids cycles and shared children, but a corrupt file may have them;
            // walking one would never end.
            match visited.get_mut(node.index()) {
                Some(seen) if !*seen => *seen = true,
                _ => {
                    log::warn!(
                        "{}: node {} appears twice in the hierarchy; skipped the second time",
                        self.path.display(),
                        node.index()
                    );
                    continue;
                }
            }
            let world = parent * Mat4::from_cols_array_2d(&node.transform().matrix());
            let (translation, rotation, scale) = node.transform().decomposed();
            let slot = out.nodes.len();
            out.nodes.push(NodeSlot {
                name: node.name().map(str::to_string),
                parent: parent_slot,
                translation: Vec3::from(translation),
                rotation: Quat::from_array(rotation),
                scale: Vec3::from(scale),
            });
            if out.camera.is_none()
                && let Some(camera) = node.camera()
            {
                out.camera = Some((camera, world));
            }
            if node.skin().is_some() {
                log::warn!(
                    "{}: node {}: skins are not supported; drawn in bind pose",
                    self.path.display(),
                    node.index()
                );
            }
            if let Some(mesh) = node.mesh() {
                for primitive in mesh.primitives() {
                    self.primitive(&mesh, &primitive, world, slot, out)?;
                }
            }
            // Reversed, so that the first child is the next popped (document order).
            let children: Vec<_> = node.children().collect();
            stack.extend(
                children
                    .into_iter()
                    .rev()
                    .map(|child| (child, world, Some(slot))),
            );
        }
        Ok(())
    }

    fn primitive(
        &self,
        mesh: &gltf::Mesh<'_>,
        primitive: &gltf::Primitive<'_>,
        world: Mat4,
        node: usize,
        out: &mut Collected<'_>,
    ) -> Result<(), SceneError> {
        let what = format!(
            "{}: mesh {} primitive {}",
            self.path.display(),
            mesh.name()
                .map_or_else(|| mesh.index().to_string(), str::to_string),
            primitive.index()
        );
        if primitive.mode() != Mode::Triangles {
            log::warn!(
                "{what}: {:?} primitives are not supported; skipped",
                primitive.mode()
            );
            return Ok(());
        }
        if primitive.morph_targets().next().is_some() {
            log::warn!("{what}: morph targets are not supported; drawn in its base shape");
        }
        // The reader allocates for an accessor's declared count before it reads a byte, so
        // every accessor read below must first be shown to fit in the bytes behind it.
        let read = [
            ("POSITION", primitive.get(&Semantic::Positions)),
            ("NORMAL", primitive.get(&Semantic::Normals)),
            ("TEXCOORD_0", primitive.get(&Semantic::TexCoords(0))),
            ("indices", primitive.indices()),
        ];
        for (role, accessor) in read {
            if let Some(accessor) = accessor {
                self.check_accessor(&accessor)
                    .map_err(|message| SceneError::GltfResource {
                        path: self.path.to_path_buf(),
                        resource: format!(
                            "accessor {} ({role} of mesh {} primitive {})",
                            accessor.index(),
                            mesh.index(),
                            primitive.index()
                        ),
                        message,
                    })?;
            }
        }
        let reader = primitive.reader(|buffer| self.buffers.get(buffer.index()).map(Vec::as_slice));
        let Some(positions) = reader.read_positions() else {
            log::warn!("{what}: no readable positions; skipped");
            return Ok(());
        };
        let positions: Vec<Vec3> = positions.map(Vec3::from).collect();
        let indices: Vec<u32> = match reader.read_indices() {
            Some(indices) => indices.into_u32().collect(),
            None => (0..positions.len() as u32).collect(),
        };
        if !indices.len().is_multiple_of(3)
            || indices.iter().any(|&i| i as usize >= positions.len())
        {
            log::warn!("{what}: indices do not make whole triangles of its vertices; skipped");
            return Ok(());
        }
        let normals: Vec<Vec3> = match reader.read_normals() {
            Some(normals) => normals.map(Vec3::from).collect(),
            None => Vec::new(),
        };
        let normals = if normals.len() == positions.len() {
            normals
        } else {
            smooth_normals(&positions, &indices)
        };
        let uvs: Vec<[f32; 2]> = match reader.read_tex_coords(0) {
            Some(uvs) => uvs.into_f32().collect(),
            None => Vec::new(),
        };

        let mut vertices = Vec::with_capacity(positions.len() * 8);
        for (i, (p, n)) in positions.iter().zip(&normals).enumerate() {
            let uv = uvs.get(i).copied().unwrap_or([0.0, 0.0]);
            vertices.extend_from_slice(&[p.x, p.y, p.z, n.x, n.y, n.z, uv[0], uv[1]]);
            out.bounds.add(world.transform_point3(*p));
        }
        let mesh = Mesh::new(
            self.gl,
            &vertices,
            Some(&indices),
            &[(0, 3), (1, 3), (2, 2)],
        )?;

        let material = primitive.material();
        let pbr = material.pbr_metallic_roughness();
        let texture = match pbr.base_color_texture() {
            Some(info) => {
                if info.tex_coord() != 0 {
                    log::warn!(
                        "{what}: base colour texture uses UV set {}; using set 0",
                        info.tex_coord()
                    );
                }
                self.texture(info.texture().source(), out)?
            }
            None => None,
        };
        out.draws.push(Draw {
            node,
            normal_matrix: normal_matrix(&world),
            mesh,
            model: world,
            base_color: Vec4::from(pbr.base_color_factor()),
            emissive: Vec3::from(material.emissive_factor()),
            texture,
        });
        Ok(())
    }

    /// The scene's texture for glTF image `image`, decoding and uploading it the first time.
    /// An image in a pixel format we do not upload is skipped with a warning (`None`).
    fn texture(
        &self,
        image: gltf::Image<'_>,
        out: &mut Collected<'_>,
    ) -> Result<Option<usize>, SceneError> {
        if let Some(&index) = out.textures_by_image.get(&image.index()) {
            return Ok(Some(index));
        }
        let resource = describe_image(&image, self.base);
        if let gltf::image::Source::View { view, .. } = image.source() {
            // gltf slices the buffer without checking; a corrupt file must not make it panic.
            let fits = self
                .buffers
                .get(view.buffer().index())
                .is_some_and(|data| view.offset().saturating_add(view.length()) <= data.len());
            if !fits {
                return Err(SceneError::GltfResource {
                    path: self.path.to_path_buf(),
                    resource,
                    message: "its buffer view lies outside its buffer".into(),
                });
            }
        }
        let decoded = match image.source() {
            gltf::image::Source::View { view, .. } => {
                let start = view.offset();
                // In range: checked above.
                let bytes = &self.buffers[view.buffer().index()][start..start + view.length()];
                self.decode_texture(std::io::Cursor::new(bytes))
            }
            gltf::image::Source::Uri { uri, .. } if is_data_uri(uri) => decode_data_uri(uri)
                .and_then(|bytes| self.decode_texture(std::io::Cursor::new(bytes))),
            gltf::image::Source::Uri { uri, .. } => open_inside(&self.root, uri)
                .and_then(|(file, _)| self.decode_texture(std::io::BufReader::new(file))),
        };
        let rgba = decoded.map_err(|message| SceneError::GltfResource {
            path: self.path.to_path_buf(),
            resource: resource.clone(),
            message,
        })?;
        // glTF's UV origin is the image's top-left corner and the decoder's first row is the
        // top one, so uploading rows as they come puts v = 0 at the top, as glTF wants.
        let texture = Texture::from_rgba8(self.gl, rgba.width(), rgba.height(), rgba.as_raw())?;
        out.textures.push(texture);
        let index = out.textures.len() - 1;
        out.textures_by_image.insert(image.index(), index);
        Ok(Some(index))
    }
}

impl Loader<'_> {
    /// Decodes an image to RGBA8 once its header has shown it within the driver's texture limit.
    fn decode_texture(
        &self,
        reader: impl std::io::BufRead + std::io::Seek,
    ) -> Result<image::RgbaImage, String> {
        let max_side_px = Texture::max_side_px(self.gl);
        let max_pixels = u64::from(max_side_px) * u64::from(max_side_px);
        capture::decode_rgba8(reader, max_side_px, max_pixels).map_err(|e| e.to_string())
    }

    /// Shows that every element `accessor` declares lies inside the bytes loaded for it, so that
    /// reading it allocates no more than the file holds. All arithmetic is checked: a count of
    /// 2^62 must not wrap round to a small size.
    fn check_accessor(&self, accessor: &gltf::Accessor<'_>) -> Result<(), String> {
        let count = accessor.count();
        let element_bytes = accessor.size();
        if count == 0 {
            return Err("count 0; glTF requires at least 1".into());
        }
        match accessor.view() {
            Some(view) => self.check_view_range(&view, accessor.offset(), count, element_bytes)?,
            // Without a view the reader reads nothing (no sparse part) or starts from `count`
            // zeros; those zeros are held to what the whole file could have backed.
            None if accessor.sparse().is_some() => {
                let loaded: usize = self.buffers.iter().map(Vec::len).sum();
                let declared = count.checked_mul(element_bytes);
                if declared.is_none_or(|bytes| bytes > loaded) {
                    return Err(format!(
                        "count {count} of {element_bytes}-byte elements with no buffer view is \
                         more than the {loaded} bytes of this model's buffers"
                    ));
                }
            }
            None => {}
        }
        if let Some(sparse) = accessor.sparse() {
            let sparse_count = sparse.count();
            if sparse_count == 0 || sparse_count > count {
                return Err(format!(
                    "sparse count {sparse_count} is not between 1 and the count {count}"
                ));
            }
            let indices = sparse.indices();
            self.check_view_range(
                &indices.view(),
                indices.offset(),
                sparse_count,
                indices.index_type().size(),
            )
            .map_err(|e| format!("sparse indices: {e}"))?;
            let values = sparse.values();
            self.check_view_range(&values.view(), values.offset(), sparse_count, element_bytes)
                .map_err(|e| format!("sparse values: {e}"))?;
        }
        Ok(())
    }

    /// Checks that `count` elements of `element_bytes` at `offset` into `view` (at the view's
    /// stride) lie inside the view, and the view inside its loaded buffer.
    fn check_view_range(
        &self,
        view: &gltf::buffer::View<'_>,
        offset: usize,
        count: usize,
        element_bytes: usize,
    ) -> Result<(), String> {
        let stride = view.stride().unwrap_or(element_bytes);
        if stride < element_bytes {
            return Err(format!(
                "byte stride {stride} is shorter than its {element_bytes}-byte elements"
            ));
        }
        // The last element needs only its own bytes, not a whole stride.
        let end = count
            .checked_sub(1)
            .and_then(|n| n.checked_mul(stride))
            .and_then(|n| n.checked_add(element_bytes))
            .and_then(|n| n.checked_add(offset));
        if end.is_none_or(|end| end > view.length()) {
            return Err(format!(
                "count {count} of {element_bytes}-byte elements at offset {offset}, stride \
                 {stride}, does not fit in buffer view {} ({} bytes)",
                view.index(),
                view.length()
            ));
        }
        let buffer_bytes = self.buffers.get(view.buffer().index()).map_or(0, Vec::len);
        let view_end = view.offset().checked_add(view.length());
        if view_end.is_none_or(|end| end > buffer_bytes) {
            return Err(format!(
                "buffer view {} ({} bytes at offset {}) runs past the {buffer_bytes} bytes of \
                 buffer {}",
                view.index(),
                view.length(),
                view.offset(),
                view.buffer().index()
            ));
        }
        Ok(())
    }
}

/// Whether a URI holds its bytes inline.
fn is_data_uri(uri: &str) -> bool {
    uri.starts_with("data:")
}

/// The bytes of a `data:` URI (base64; the gltf crate decodes it without touching the file
/// system). They are bounded by the size of the JSON that holds them.
fn decode_data_uri(uri: &str) -> Result<Vec<u8>, String> {
    gltf::buffer::Data::from_source_and_blob(gltf::buffer::Source::Uri(uri), None, &mut None)
        .map(|data| data.0)
        .map_err(|e| e.to_string())
}

/// Opens the file a URI that is not a `data:` URI names, inside `root` (canonical), and returns
/// it with its size. Refused: URIs with a scheme (`file:`, `http:`), absolute paths, anything
/// whose canonical path, symlinks followed, leaves `root`, and anything that is not a regular
/// file (a FIFO would block the read forever, a device would never end). The URI is
/// percent-decoded first, as glTF requires.
///
/// The path is opened once and every check after the open is made on the open file, never on
/// the path again: a file swapped for a symlink (to a FIFO, or out of the folder) between a
/// check and the open must not be read. See [`open_checked`].
fn open_inside(root: &Path, uri: &str) -> Result<(std::fs::File, u64), String> {
    let refused = |why: &str| {
        format!(
            "refused URI {uri:?}: {why} (a model may only reference files inside its own folder, \
             or data: URIs)"
        )
    };
    // RFC 3986: a scheme is what comes before the first ':' when no '/' precedes it.
    if let Some((scheme, _)) = uri.split_once(':')
        && !scheme.contains('/')
    {
        return Err(refused(&format!("the {scheme}: scheme is not read")));
    }
    let decoded =
        percent_decode(uri).ok_or_else(|| refused("it is not UTF-8 once percent-decoded"))?;
    let relative = Path::new(&decoded);
    if relative.has_root() {
        return Err(refused("it is an absolute path"));
    }
    let joined = root.join(relative);
    // Symlinks inside the folder are followed here, once; the open below follows none.
    let canonical =
        std::fs::canonicalize(&joined).map_err(|e| format!("{}: {e}", joined.display()))?;
    if !canonical.starts_with(root) {
        return Err(refused(&format!(
            "it resolves to {}, outside {}",
            canonical.display(),
            root.display()
        )));
    }
    open_checked(root, &canonical).map_err(|why| refused(&why))
}

/// Opens `path` without following a symlink in its last part and without blocking (a FIFO
/// opened for reading blocks until a writer comes), then checks the open file itself: that it is
/// a regular file (`fstat`), and that its real path (`/proc/self/fd`) lies inside `root`. What is
/// checked is what is read.
fn open_checked(root: &Path, path: &Path) -> Result<(std::fs::File, u64), String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(rustix::io::Errno::LOOP) => {
            return Err(format!("{} became a symlink", path.display()));
        }
        Err(e) => return Err(format!("{}: {}", path.display(), io_error(e))),
    };
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".into());
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("cannot tell where the opened file lies: {e}"))?;
    if !real.starts_with(root) {
        return Err(format!(
            "it was opened at {}, outside {}",
            real.display(),
            root.display()
        ));
    }
    // Reads from a regular file never block; clearing the flag keeps the file ordinary.
    rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| io_error(e).to_string())?;
    Ok((file, metadata.len()))
}

fn io_error(errno: rustix::io::Errno) -> std::io::Error {
    errno.into()
}

/// Decodes `%XX` escapes (RFC 3986); `None` for bytes that are not UTF-8. A `%` not followed by
/// two hex digits stays as it is, as browsers and the percent-encoding crate keep it.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// One buffer's bytes: the GLB binary chunk, a `data:` URI, or a file inside `root`. A file is
/// checked against the declared `byteLength` before it is read, and no more than that is read:
/// a buffer that points at a huge file costs only what it declares.
fn load_buffer(
    buffer: &gltf::Buffer<'_>,
    blob: &mut Option<Vec<u8>>,
    root: &Path,
) -> Result<Vec<u8>, String> {
    let declared = buffer.length();
    let data = match buffer.source() {
        gltf::buffer::Source::Bin => blob
            .take()
            .ok_or("the GLB has no binary chunk for it (or it is claimed twice)")?,
        gltf::buffer::Source::Uri(uri) if is_data_uri(uri) => decode_data_uri(uri)?,
        gltf::buffer::Source::Uri(uri) => {
            let (file, file_bytes) = open_inside(root, uri)?;
            if file_bytes < declared as u64 {
                return Err(format!("{file_bytes} bytes, the file says {declared}"));
            }
            let mut data = Vec::new();
            data.try_reserve_exact(declared)
                .map_err(|_| format!("cannot allocate its {declared} bytes"))?;
            file.take(declared as u64)
                .read_to_end(&mut data)
                .map_err(|e| e.to_string())?;
            data
        }
    };
    if data.len() < declared {
        return Err(format!("{} bytes, the file says {declared}", data.len()));
    }
    Ok(data)
}

/// A referenced file's path (so errors name it), or where the bytes are embedded.
fn describe_uri(uri: &str, base: &Path, embedded: String) -> String {
    if uri.starts_with("data:") {
        embedded
    } else {
        // URIs are percent-encoded; spaces are the common case, and enough for a readable name.
        base.join(PathBuf::from(uri.replace("%20", " ")))
            .display()
            .to_string()
    }
}

fn describe_buffer(buffer: &gltf::Buffer<'_>, base: &Path) -> String {
    match buffer.source() {
        gltf::buffer::Source::Uri(uri) => {
            describe_uri(uri, base, format!("buffer {} (embedded)", buffer.index()))
        }
        gltf::buffer::Source::Bin => "the GLB binary chunk".to_string(),
    }
}

fn describe_image(image: &gltf::Image<'_>, base: &Path) -> String {
    match image.source() {
        gltf::image::Source::Uri { uri, .. } => {
            describe_uri(uri, base, format!("image {} (embedded)", image.index()))
        }
        gltf::image::Source::View { .. } => format!("image {} (in a buffer)", image.index()),
    }
}

/// Area-weighted vertex normals, for primitives that come without normals.
fn smooth_normals(positions: &[Vec3], indices: &[u32]) -> Vec<Vec3> {
    let mut normals = vec![Vec3::ZERO; positions.len()];
    for triangle in indices.chunks_exact(3) {
        let [a, b, c] = [triangle[0], triangle[1], triangle[2]].map(|i| i as usize);
        let face = (positions[b] - positions[a]).cross(positions[c] - positions[a]);
        for i in [a, b, c] {
            normals[i] += face;
        }
    }
    normals
        .into_iter()
        .map(|n| n.try_normalize().unwrap_or(Vec3::Z))
        .collect()
}

/// The file's camera: its node's inverse world matrix, its projection with our aspect.
fn own_camera(camera: &gltf::Camera<'_>, world: &Mat4, aspect: f32, bounds: &Bounds) -> CameraRig {
    let view = world.inverse();
    let eye = world.transform_point3(Vec3::ZERO);
    let (center, radius) = bounds.sphere();
    // A camera without a far plane still needs one for a finite depth buffer: just past the
    // farthest point of the scene.
    let scene_far = (eye.distance(center) + radius) * 1.5;
    let projection = match camera.projection() {
        gltf::camera::Projection::Perspective(p) => {
            let near = positive_or(p.znear(), 0.01);
            let far = p
                .zfar()
                .map_or(scene_far, |f| positive_or(f, scene_far))
                .max(near * 2.0);
            camera::rh::proj::opengl::perspective(
                positive_or(p.yfov(), FRAMING_FOV_RADIANS),
                aspect,
                near,
                far,
            )
        }
        gltf::camera::Projection::Orthographic(o) => {
            let half_height = positive_or(o.ymag(), 1.0);
            let near = o.znear().max(0.0);
            let far = positive_or(o.zfar(), scene_far).max(near + 1e-3);
            camera::rh::proj::opengl::orthographic(
                -half_height * aspect,
                half_height * aspect,
                -half_height,
                half_height,
                near,
                far,
            )
        }
    };
    CameraRig::Fixed { view, projection }
}

/// The matrix that carries normals for `world`.
fn normal_matrix(world: &Mat4) -> Mat4 {
    let linear = Mat3::from_mat4(*world);
    // A singular matrix flattens the primitive; any normal matrix will do for it.
    if linear.determinant().abs() > f32::EPSILON {
        Mat4::from_mat3(linear.inverse().transpose())
    } else {
        Mat4::IDENTITY
    }
}

fn positive_or(value: f32, fallback: f32) -> f32 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        fallback
    }
}

/// A camera that keeps the bounding sphere in view from every angle of its orbit.
fn framing_camera(bounds: &Bounds, aspect: f32) -> CameraRig {
    let (center, radius) = bounds.sphere();
    let half_vertical = FRAMING_FOV_RADIANS / 2.0;
    let half_horizontal = (half_vertical.tan() * aspect).atan();
    let distance = radius / half_vertical.min(half_horizontal).sin() * 1.05;
    let near = (distance - radius) * 0.5;
    let far = distance + radius * 2.0;
    CameraRig::Orbit {
        center,
        distance,
        projection: camera::rh::proj::opengl::perspective(
            FRAMING_FOV_RADIANS,
            aspect,
            near.max(distance * 1e-3),
            far,
        ),
    }
}

impl GltfScene {
    /// The camera as a request would change it: the steered one, or the current view (at frame
    /// 0 for the orbit) with the file's or the framing field of view.
    fn steered_camera(&self) -> SteeredCamera {
        if let CameraRig::Steered { camera, .. } = &self.camera {
            return *camera;
        }
        let inverse = self.camera.view(0).inverse();
        let eye = inverse.transform_point3(Vec3::ZERO);
        let projection = self.camera.projection();
        // A perspective projection's y scale is 1 / tan(fov / 2); an orthographic one has
        // w = 1 and no field of view: then the framing one.
        let fov = if projection.w_axis.w == 0.0 && projection.y_axis.y > 0.0 {
            2.0 * (1.0 / projection.y_axis.y).atan()
        } else {
            FRAMING_FOV_RADIANS
        };
        SteeredCamera {
            eye,
            target: eye + inverse.transform_vector3(Vec3::NEG_Z),
            up: inverse.transform_vector3(Vec3::Y).normalize_or(Vec3::Y),
            fov_deg: fov.to_degrees(),
        }
    }

    /// Each node's world matrix, from the local ones (parents come first).
    fn worlds(nodes: &[NodeSlot]) -> Vec<Mat4> {
        let mut worlds: Vec<Mat4> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let parent = node.parent.map_or(Mat4::IDENTITY, |p| worlds[p]);
            worlds.push(parent * node.local());
        }
        worlds
    }
}

impl Scene for GltfScene {
    fn apply(&mut self, settings: &Settings) -> Result<(), String> {
        super::refuse_unsupported("glTF", settings, false, true, true)?;
        let camera = match &settings.camera {
            Some(change) => Some(self.steered_camera().changed(change)?),
            None => None,
        };
        let mut moves = Vec::with_capacity(settings.nodes.len());
        for (name, change) in &settings.nodes {
            let Some(slot) = self
                .nodes
                .iter()
                .position(|n| n.name.as_deref() == Some(name.as_str()))
            else {
                let names: Vec<&str> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.name.as_deref())
                    .take(20)
                    .collect();
                return Err(format!(
                    "node {name:?}: {} has no node of that name (it has: {})",
                    self.name,
                    if names.is_empty() {
                        "no named nodes".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            };
            moves.push((slot, *change));
        }
        // Everything checked: apply.
        if let Some(camera) = camera {
            self.camera = CameraRig::Steered {
                camera,
                view: camera.view(),
                projection: camera.projection(self.aspect, self.near, self.far),
            };
        }
        if !moves.is_empty() {
            for (slot, change) in moves {
                let node = &mut self.nodes[slot];
                node.translation = change.translation.unwrap_or(node.translation);
                node.rotation = change.rotation.unwrap_or(node.rotation);
                node.scale = change.scale.unwrap_or(node.scale);
            }
            let worlds = Self::worlds(&self.nodes);
            for draw in &mut self.draws {
                draw.model = worlds[draw.node];
                draw.normal_matrix = normal_matrix(&draw.model);
            }
        }
        Ok(())
    }

    fn render(&mut self, frame_index: u64, target: &RenderTarget) {
        target.begin(Clear::Depth);

        self.backdrop.draw();
        let u = &self.uniforms;

        // Double-sided materials and mirrored nodes are common; the shader lights either face.
        set_depth_test(&self.gl, true);
        let view = self.camera.view(frame_index);
        let light = view
            .inverse()
            .transform_vector3(LIGHT_IN_VIEW)
            .normalize_or(Vec3::NEG_Y);
        self.program.bind();
        self.program
            .set_mat4(&u.view_projection, &(self.camera.projection() * view));
        self.program.set_vec3(&u.light_direction, light);
        self.program.set_i32(&u.base_color_texture, 0);
        for draw in &self.draws {
            self.program.set_mat4(&u.model, &draw.model);
            self.program.set_mat4(&u.normal_matrix, &draw.normal_matrix);
            self.program.set_vec4(&u.base_color_factor, draw.base_color);
            self.program.set_vec3(&u.emissive, draw.emissive);
            match draw.texture.and_then(|i| self.textures.get(i)) {
                Some(texture) => texture.bind(0),
                None => self.white.bind(0),
            }
            draw.mesh.draw();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_normals_point_out_of_a_counter_clockwise_triangle() {
        let positions = [Vec3::ZERO, Vec3::X, Vec3::Y];
        let normals = smooth_normals(&positions, &[0, 1, 2]);
        assert!(normals.iter().all(|n| n.abs_diff_eq(Vec3::Z, 1e-6)));
    }

    /// A fresh folder `models/` with a sibling `outside/` holding a FIFO no one writes to: what
    /// a hostile model points at to make the loader hang, or read what it must not.
    fn planted(name: &str) -> (PathBuf, PathBuf) {
        let top = std::env::temp_dir().join(format!("glstream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let (models, outside) = (top.join("models"), top.join("outside"));
        std::fs::create_dir_all(&models).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let fifo = outside.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo (coreutils) is needed");
        (std::fs::canonicalize(models).unwrap(), fifo)
    }

    #[test]
    fn the_open_file_is_checked_not_the_path_again() {
        let (root, fifo) = planted("open-checked");
        // What a swap between a check and the open leaves: the checked path is now a symlink
        // (to a FIFO outside the folder). It is refused at once, never read, never waited on.
        let link = root.join("tex.bin");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let error = open_checked(&root, &link).unwrap_err();
        assert!(error.contains("became a symlink"), "{error}");
        // A FIFO inside the folder, no writer: opened without blocking, refused by its type.
        // (On another thread, so that a regression fails here instead of hanging the suite.)
        std::fs::rename(&fifo, root.join("inner.fifo")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let opener = root.clone();
        std::thread::spawn(move || tx.send(open_inside(&opener, "inner.fifo").map(|_| ())));
        let opened = rx.recv_timeout(std::time::Duration::from_secs(60));
        let error = opened.expect("opening a FIFO blocked").unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
        // A symlink inside the folder to a file inside it still works.
        std::fs::write(root.join("real.bin"), b"bytes").unwrap();
        std::os::unix::fs::symlink("real.bin", root.join("alias.bin")).unwrap();
        let (mut file, len) = open_inside(&root, "alias.bin").unwrap();
        let mut read = String::new();
        file.read_to_string(&mut read).unwrap();
        assert_eq!((read.as_str(), len), ("bytes", 5));
        std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_file_swapped_for_a_symlink_while_loading_is_never_read() {
        // The attack as a hostile user ran it: one thread flips the model's file between a
        // regular file and a symlink to a file outside the folder while the loader opens it.
        // Every open either reads the regular file or is refused; none reads the file outside.
        // (A file, not the FIFO the attack used, so that a regression fails instead of hanging.)
        let (root, fifo) = planted("swap");
        let target = fifo.with_file_name("secret");
        std::fs::write(&target, b"secret").unwrap();
        let (good, link) = (root.join("good.bin"), root.join("tex.bin"));
        std::fs::write(&good, b"texture").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, good, link) = (stop.clone(), good.clone(), link.clone());
            std::thread::spawn(move || {
                let staging = link.with_extension("staging");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::copy(&good, &staging).unwrap();
                    std::fs::rename(&staging, &link).unwrap();
                    let _ = std::fs::remove_file(&staging);
                    std::os::unix::fs::symlink(&target, &staging).unwrap();
                    std::fs::rename(&staging, &link).unwrap();
                }
            })
        };
        let (mut read, mut refused) = (0, 0);
        for _ in 0..2000 {
            match open_inside(&root, "tex.bin") {
                Ok((mut file, _)) => {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes).unwrap();
                    assert_eq!(bytes, b"texture");
                    read += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(read + refused, 2000);
        std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    #[test]
    fn uris_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b.bin").as_deref(), Some("a b.bin"));
        assert_eq!(percent_decode("%2E%2E/x").as_deref(), Some("../x"));
        assert_eq!(percent_decode("plain"), Some("plain".into()));
        assert_eq!(percent_decode("bad%2").as_deref(), Some("bad%2"));
        assert_eq!(percent_decode("bad%zz").as_deref(), Some("bad%zz"));
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn framing_keeps_the_whole_sphere_in_view() {
        let mut bounds = Bounds::empty();
        bounds.add(Vec3::new(-1.0, -2.0, -0.5));
        bounds.add(Vec3::new(3.0, 1.0, 0.5));
        let (center, radius) = bounds.sphere();
        for aspect in [0.5, 1.0, 2.0] {
            let rig = framing_camera(&bounds, aspect);
            for frame in [0, 45, 200] {
                let clip = rig.projection() * rig.view(frame);
                for direction in [
                    Vec3::X,
                    Vec3::NEG_X,
                    Vec3::Y,
                    Vec3::NEG_Y,
                    Vec3::Z,
                    Vec3::NEG_Z,
                ] {
                    let p = clip.project_point3(center + direction * radius);
                    assert!(
                        p.abs().max_element() <= 1.0,
                        "{p} out of view at aspect {aspect}"
                    );
                }
            }
        }
    }
}
