//! `--scene`: the built-in test pattern, Shadertoy-style shader files and glTF models, through
//! the real binary (snapshots and the stream), with goldens in tests/golden/ and small assets in
//! tests/assets/ (a .frag, a .gltf with an external PNG, a .glb with an embedded one and a camera).

use std::path::{Path, PathBuf};

use super::util::{
    Server, assert_clean_failure, distinct_bytes, read_frames, run, snapshot, snapshot_ok,
};
use super::{H, W, path_str, scratch};

use glstream::pattern_code::decode_pattern;

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/assets")
        .join(name)
}

/// A PNG's pixels with rows bottom-up, as the stream sends them and the decoder wants them.
fn bottom_up(png: &Path) -> (Vec<u8>, u32, u32) {
    let image = image::open(png).unwrap().to_rgba8();
    let (w, h) = image.dimensions();
    let rows: Vec<u8> = image
        .as_raw()
        .chunks(w as usize * 4)
        .rev()
        .flatten()
        .copied()
        .collect();
    (rows, w, h)
}

mod pattern {
    //! The pattern carries its frame index through a snapshot and through the stream.

    use super::*;

    #[test]
    fn a_snapshot_decodes_to_its_frame_index_at_small_sizes() {
        let dir = scratch("scene-pattern");
        for (w, h) in [("160", "120"), (W, H), ("64", "32")] {
            for frame in [0, 90, 123_456_789] {
                let out = dir.join(format!("{w}x{h}_{frame}.png"));
                snapshot_ok(
                    &out,
                    (w, h),
                    &["--scene", "pattern", "--frame", &frame.to_string()],
                );
                let (pixels, width, height) = bottom_up(&out);
                assert_eq!(
                    decode_pattern(&pixels, width, height),
                    Some(frame),
                    "{w}x{h} frame {frame}"
                );
                // Top-down rows are not a pattern frame: the decoder notices the flip.
                let top_down = image::open(&out).unwrap().to_rgba8().into_raw();
                assert_eq!(decode_pattern(&top_down, width, height), None);
            }
        }
    }

    #[test]
    fn streamed_frames_decode_to_consecutive_indices() {
        let server = Server::start(&[
            "--scene", "pattern", "--width", W, "--height", H, "--frames", "12", "--policy",
            "lossless",
        ]);
        let frames = read_frames(&mut server.connect(), 12);
        let indices: Vec<Option<u64>> = frames
            .iter()
            .map(|f| decode_pattern(&f.pixels, f.width, f.height))
            .collect();
        let expected: Vec<Option<u64>> = (0..12).map(Some).collect();
        assert_eq!(indices, expected);
    }

    #[test]
    fn other_scenes_are_not_pattern_frames() {
        let dir = scratch("scene-pattern-not");
        let out = dir.join("cube.png");
        snapshot_ok(&out, (W, H), &["--scene", "cube", "--frame", "0"]);
        let (pixels, width, height) = bottom_up(&out);
        assert_eq!(decode_pattern(&pixels, width, height), None);
    }
}

mod shader {
    //! Shadertoy-style fragment shaders: uniforms, coordinates, and compile errors that point
    //! at the user's file and line.

    use super::*;

    #[test]
    fn uniforms_have_the_documented_values() {
        let dir = scratch("scene-shader-uniforms");
        let shader = dir.join("probe.frag");
        // Bottom half: iTime's fraction, iFrame and iResolution.x as 8-bit colours; top half
        // black, so the test also sees that fragCoord's origin is the bottom-left corner.
        std::fs::write(
            &shader,
            "void mainImage(out vec4 fragColor, in vec2 fragCoord) {\n\
             \x20   if (fragCoord.y > 0.5 * iResolution.y) { fragColor = vec4(0.0); return; }\n\
             \x20   fragColor = vec4(fract(iTime), float(iFrame) / 255.0, iResolution.x / 255.0, 0.0);\n\
             }\n",
        )
        .unwrap();
        let out = dir.join("probe.png");
        // Frame 30 without --fps is 30 / 60 = 0.5 s.
        snapshot_ok(
            &out,
            (W, H),
            &["--scene", path_str(&shader), "--frame", "30"],
        );
        let png = image::open(&out).unwrap().to_rgba8();
        let bottom = png.get_pixel(5, 60).0;
        let top = png.get_pixel(5, 5).0;
        assert!(bottom[0].abs_diff(128) <= 1, "iTime: {bottom:?}");
        assert_eq!(bottom[1], 30, "iFrame: {bottom:?}");
        assert_eq!(bottom[2], 98, "iResolution.x: {bottom:?}");
        assert_eq!(
            bottom[3], 255,
            "frames are opaque whatever alpha the shader writes"
        );
        assert_eq!(
            top,
            [0, 0, 0, 255],
            "PNG row 0 is the top, which is fragCoord.y = height"
        );
    }

    #[test]
    fn a_shader_that_uses_no_uniform_renders() {
        // Shadertoy's uniforms are optional: the compiler drops the ones a file leaves unused.
        let dir = scratch("scene-shader-no-uniforms");
        let shader = dir.join("flat.frag");
        std::fs::write(
            &shader,
            "void mainImage(out vec4 fragColor, in vec2 fragCoord) {\n\
             \x20   fragColor = vec4(1.0, 0.5, 0.0, 1.0);\n\
             }\n",
        )
        .unwrap();
        let out = dir.join("flat.png");
        snapshot_ok(
            &out,
            (W, H),
            &["--scene", path_str(&shader), "--frame", "0"],
        );
        let png = image::open(&out).unwrap().to_rgba8();
        let pixel = png.get_pixel(10, 10).0;
        assert_eq!(pixel[0], 255, "{pixel:?}");
        assert!(pixel[1].abs_diff(128) <= 1, "{pixel:?}");
        assert_eq!(pixel[2], 0, "{pixel:?}");
    }

    #[test]
    fn the_image_changes_with_itime_and_iframe() {
        let dir = scratch("scene-shader-changes");
        let scene = asset("waves.frag");
        let shots: Vec<Vec<u8>> = [0, 1, 2]
            .iter()
            .map(|&frame| {
                let out = dir.join(format!("{frame}.png"));
                snapshot_ok(
                    &out,
                    (W, H),
                    &["--scene", path_str(&scene), "--frame", &frame.to_string()],
                );
                image::open(&out).unwrap().to_rgba8().into_raw()
            })
            .collect();
        assert!(
            distinct_bytes(&shots[0]) > 40,
            "the shader output looks flat"
        );
        assert_ne!(shots[0], shots[1]);
        assert_ne!(shots[1], shots[2]);
    }

    #[test]
    fn a_syntax_error_names_the_file_and_its_line() {
        let dir = scratch("scene-shader-error");
        let shader = dir.join("broken_wave.frag");
        std::fs::write(
            &shader,
            "void mainImage(out vec4 fragColor, in vec2 fragCoord) {\n\
             \x20   vec2 uv = fragCoord / iResolution.xy;\n\
             \x20   fragColor = vec4(uv, 0.0 1.0);\n\
             }\n",
        )
        .unwrap();
        let output = snapshot(
            &dir.join("x.png"),
            (W, H),
            &["--scene", path_str(&shader), "--frame", "0"],
        );
        assert_clean_failure(&output, "broken_wave.frag");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Mesa writes `0:3(27): error: ...`; NVIDIA `0(3) : error ...`.
        assert!(
            stderr.contains("0:3(") || stderr.contains("0(3)"),
            "the error must point at line 3 of the file:\n{stderr}"
        );
    }

    #[test]
    fn a_missing_shader_file_is_named() {
        let output = snapshot(
            Path::new("x.png"),
            (W, H),
            &["--scene", "/nonexistent/dir/sky.frag", "--frame", "0"],
        );
        assert_clean_failure(&output, "/nonexistent/dir/sky.frag");
    }
}

mod gltf {
    //! glTF models: hierarchy, materials, cameras, and files that are missing or broken.

    use super::*;

    #[test]
    fn a_model_with_a_camera_renders_still_from_it() {
        let dir = scratch("scene-gltf-camera");
        let scene = asset("model_camera.glb");
        let (zero, ninety) = (dir.join("0.png"), dir.join("90.png"));
        snapshot_ok(
            &zero,
            (W, H),
            &["--scene", path_str(&scene), "--frame", "0"],
        );
        snapshot_ok(
            &ninety,
            (W, H),
            &["--scene", path_str(&scene), "--frame", "90"],
        );
        let zero = std::fs::read(zero).unwrap();
        assert!(
            zero == std::fs::read(ninety).unwrap(),
            "a glTF camera is still: frames must match"
        );
        let pixels = image::load_from_memory(&zero).unwrap().to_rgba8();
        assert!(distinct_bytes(pixels.as_raw()) > 40, "the model is missing");
    }

    #[test]
    fn a_model_without_a_camera_orbits() {
        let dir = scratch("scene-gltf-orbit");
        let scene = asset("model.gltf");
        let (zero, one) = (dir.join("0.png"), dir.join("1.png"));
        snapshot_ok(
            &zero,
            (W, H),
            &["--scene", path_str(&scene), "--frame", "0"],
        );
        snapshot_ok(&one, (W, H), &["--scene", path_str(&scene), "--frame", "1"]);
        assert!(std::fs::read(zero).unwrap() != std::fs::read(one).unwrap());
    }

    #[test]
    fn a_missing_gltf_is_named() {
        let output = snapshot(
            Path::new("x.png"),
            (W, H),
            &["--scene", "/nonexistent/dir/ship.gltf", "--frame", "0"],
        );
        assert_clean_failure(&output, "/nonexistent/dir/ship.gltf");
    }

    #[test]
    fn a_corrupt_glb_is_named() {
        let dir = scratch("scene-gltf-corrupt");
        let glb = dir.join("truncated.glb");
        let whole = std::fs::read(asset("model_camera.glb")).unwrap();
        std::fs::write(&glb, &whole[..whole.len() / 2]).unwrap();
        let output = snapshot(
            &dir.join("x.png"),
            (W, H),
            &["--scene", path_str(&glb), "--frame", "0"],
        );
        assert_clean_failure(&output, "truncated.glb");

        let garbage = dir.join("garbage.glb");
        std::fs::write(&garbage, b"glTF\x02\0\0\0this is not a binary glTF").unwrap();
        let output = snapshot(
            &dir.join("x.png"),
            (W, H),
            &["--scene", path_str(&garbage), "--frame", "0"],
        );
        assert_clean_failure(&output, "garbage.glb");
    }

    #[test]
    fn a_texture_that_cannot_be_read_is_named() {
        // The model without the PNG beside it.
        let dir = scratch("scene-gltf-no-texture");
        let model = dir.join("model.gltf");
        std::fs::copy(asset("model.gltf"), &model).unwrap();
        let output = snapshot(
            &dir.join("x.png"),
            (W, H),
            &["--scene", path_str(&model), "--frame", "0"],
        );
        assert_clean_failure(&output, "checker.png");

        // And with a PNG that is not one.
        std::fs::write(dir.join("checker.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let output = snapshot(
            &dir.join("x.png"),
            (W, H),
            &["--scene", path_str(&model), "--frame", "0"],
        );
        assert_clean_failure(&output, "checker.png");
    }
}

mod untrusted_gltf {
    //! glTF files are untrusted input: the files they reference stay inside the model's folder,
    //! and the sizes they declare are checked against the bytes behind them before anything is
    //! allocated. Each refusal is one error line naming the model and what it referenced.

    use super::*;
    use serde_json::{Value, json};

    /// A triangle's positions (3 × VEC3), UVs (3 × VEC2) and one u32 sparse index: 64 bytes.
    fn triangle_bytes() -> Vec<u8> {
        let floats: [f32; 15] = [
            -1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0, 0.0, // positions
            0.0, 0.0, 1.0, 0.0, 0.5, 1.0, // UVs
        ];
        let mut bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes
    }

    /// A positions accessor over the triangle, with `changes` merged in.
    fn positions(changes: Value) -> Value {
        let mut accessor = json!({
            "bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
            "min": [-1.0, -1.0, 0.0], "max": [1.0, 1.0, 0.0]
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                accessor.as_object_mut().unwrap().remove(key);
            } else {
                accessor[key] = value.clone();
            }
        }
        accessor
    }

    /// Writes `dir/model.gltf`: the triangle, its one buffer at `buffer_uri`, its POSITION
    /// accessor `position`, and a base colour texture at `image_uri` if given.
    fn write_model(
        dir: &Path,
        buffer_uri: &str,
        position: Value,
        image_uri: Option<&str>,
    ) -> PathBuf {
        let mut model = json!({
            "asset": {"version": "2.0"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{
                "attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0
            }]}],
            "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.9, 0.2, 0.1, 1.0]}}],
            "buffers": [{"uri": buffer_uri, "byteLength": 64}],
            "bufferViews": [
                {"buffer": 0, "byteOffset": 0, "byteLength": 36},
                {"buffer": 0, "byteOffset": 36, "byteLength": 24},
                {"buffer": 0, "byteOffset": 60, "byteLength": 4}
            ],
            "accessors": [
                position,
                {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"}
            ]
        });
        if let Some(uri) = image_uri {
            model["images"] = json!([{"uri": uri}]);
            model["textures"] = json!([{"source": 0}]);
            model["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] = json!({"index": 0});
        }
        let path = dir.join("model.gltf");
        std::fs::write(&path, serde_json::to_string_pretty(&model).unwrap()).unwrap();
        path
    }

    /// The buffer as a data: URI (the test's base64, to need no crate for it).
    fn data_uri(bytes: &[u8]) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::from("data:application/octet-stream;base64,");
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
            for i in 0..4 {
                text.push(if i <= chunk.len() {
                    TABLE[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        text
    }

    fn render(model: &Path, dir: &Path) -> std::process::Output {
        snapshot(
            &dir.join("out.png"),
            (W, H),
            &["--scene", path_str(model), "--frame", "0"],
        )
    }

    /// Asserts one clean error line naming the model and `needle` (the URI or accessor).
    fn assert_refused(output: &std::process::Output, model: &Path, needle: &str) {
        assert_clean_failure(output, needle);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(path_str(model)),
            "the model must be named: {stderr}"
        );
    }

    #[test]
    fn files_inside_the_models_folder_and_data_uris_load() {
        let dir = scratch("gltf-inside");
        std::fs::create_dir_all(dir.join("sub dir")).unwrap();
        std::fs::write(dir.join("sub dir/tri.bin"), triangle_bytes()).unwrap();
        std::fs::copy(asset("checker.png"), dir.join("checker.png")).unwrap();
        let model = write_model(
            &dir,
            "sub%20dir/../sub%20dir/tri.bin",
            positions(json!({})),
            Some("checker.png"),
        );
        let output = render(&model, &dir);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let model = write_model(
            &dir,
            &data_uri(&triangle_bytes()),
            positions(json!({})),
            None,
        );
        let output = render(&model, &dir);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn uris_leaving_the_models_folder_are_refused() {
        // outside.bin and outside.png sit beside the model's folder, not in it.
        let dir = scratch("gltf-escape");
        let outside_bin = dir.join("outside.bin");
        let outside_png = dir.join("outside.png");
        std::fs::write(&outside_bin, triangle_bytes()).unwrap();
        std::fs::copy(asset("checker.png"), &outside_png).unwrap();
        let folder = dir.join("model");
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        std::fs::write(folder.join("tri.bin"), triangle_bytes()).unwrap();
        std::os::unix::fs::symlink(&outside_bin, folder.join("link.bin")).unwrap();
        std::os::unix::fs::symlink(&outside_png, folder.join("link.png")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", folder.join("zero.bin")).unwrap();
        let absolute_bin = path_str(&outside_bin).to_string();
        let file_uri = format!("file://{absolute_bin}");
        for uri in [
            "../outside.bin",
            "sub/../../outside.bin",
            "%2E%2E/outside.bin",
            absolute_bin.as_str(),
            file_uri.as_str(),
            "file:../outside.bin",
            "link.bin",
            // A device: would read until memory runs out.
            "/dev/zero",
            "zero.bin",
        ] {
            let model = write_model(&folder, uri, positions(json!({})), None);
            assert_refused(&render(&model, &folder), &model, &format!("{uri:?}"));
        }
        let absolute_png = path_str(&outside_png).to_string();
        for uri in ["../outside.png", absolute_png.as_str(), "link.png"] {
            let model = write_model(&folder, "tri.bin", positions(json!({})), Some(uri));
            assert_refused(&render(&model, &folder), &model, &format!("{uri:?}"));
        }
    }

    #[test]
    fn buffers_that_are_not_regular_files_are_refused() {
        let dir = scratch("gltf-not-regular");
        let fifo = dir.join("pipe.bin");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        std::fs::create_dir_all(dir.join("folder.bin")).unwrap();
        for uri in ["pipe.bin", "folder.bin"] {
            // Reading the FIFO would block for ever (the helper fails the test after its
            // deadline).
            let model = write_model(&dir, uri, positions(json!({})), None);
            let output = render(&model, &dir);
            assert_refused(&output, &model, &format!("{uri:?}"));
            assert!(String::from_utf8_lossy(&output.stderr).contains("not a regular file"));
        }
    }

    #[test]
    fn buffer_files_are_checked_against_their_declared_length() {
        let dir = scratch("gltf-buffer-length");
        let short = dir.join("short.bin");
        std::fs::write(&short, &triangle_bytes()[..40]).unwrap();
        let model = write_model(&dir, "short.bin", positions(json!({})), None);
        assert_refused(&render(&model, &dir), &model, "40 bytes, the file says 64");

        // A 1 TiB file (sparse: it takes no disk) that declares 64 bytes: only those are read.
        // Reading the whole file would need a terabyte of memory.
        let huge = dir.join("huge.bin");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(1 << 40).unwrap();
        drop(file);
        let mut bytes = std::fs::OpenOptions::new().write(true).open(&huge).unwrap();
        std::io::Write::write_all(&mut bytes, &triangle_bytes()).unwrap();
        drop(bytes);
        let model = write_model(&dir, "huge.bin", positions(json!({})), None);
        let output = render(&model, &dir);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::remove_file(&huge).unwrap();
    }

    #[test]
    fn a_texture_bomb_in_a_model_is_refused_from_its_header() {
        let dir = scratch("gltf-texture-bomb");
        crate::util::write_png_bomb(&dir.join("bomb.png"), 20_000);
        let model = write_model(
            &dir,
            &data_uri(&triangle_bytes()),
            positions(json!({})),
            Some("bomb.png"),
        );
        let output = render(&model, &dir);
        assert_refused(&output, &model, "bomb.png");
        assert!(String::from_utf8_lossy(&output.stderr).contains("20000x20000"));
    }

    #[test]
    fn accessor_counts_beyond_their_bytes_are_refused() {
        let dir = scratch("gltf-accessor-count");
        let buffer = data_uri(&triangle_bytes());
        let sparse = |count: u64| {
            json!({
                "count": count,
                "indices": {"bufferView": 2, "componentType": 5125},
                "values": {"bufferView": 0}
            })
        };
        let cases = [
            // One element past the view.
            positions(json!({"count": 4})),
            // 2^40 elements: the allocation alone would abort the process.
            positions(json!({"count": 1u64 << 40})),
            // 2^62 × 12 bytes wraps to 0 in unchecked arithmetic: an empty mesh, no error.
            positions(json!({"count": 1u64 << 62})),
            // 1e8 elements: 1.6 GB from a file of a few hundred bytes.
            positions(json!({"count": 100_000_000})),
            // Starting 4 bytes in, the third element runs past the view.
            positions(json!({"byteOffset": 4})),
            // Sparse, with no view: count zeros that nothing backs.
            positions(json!({"bufferView": null, "count": 1u64 << 40, "sparse": sparse(1)})),
            positions(json!({"bufferView": null, "count": 100_000_000, "sparse": sparse(1)})),
            // Sparse parts that run past their views.
            positions(json!({"count": 3, "sparse": sparse(2)})),
            positions(json!({"count": 1u64 << 40, "sparse": sparse(1u64 << 40)})),
            positions(json!({"count": 1u64 << 62, "sparse": sparse(1u64 << 62)})),
        ];
        for accessor in cases {
            // Each is refused before anything is allocated for it: quick and small.
            let model = write_model(&dir, &buffer, accessor, None);
            let output = render(&model, &dir);
            assert_refused(&output, &model, "accessor 0 (POSITION");
        }
        // The valid accessor still loads (the check is not simply refusing everything).
        let model = write_model(
            &dir,
            &buffer,
            positions(json!({"count": 3, "sparse": sparse(1)})),
            None,
        );
        let output = render(&model, &dir);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

mod refused {
    //! Scene arguments that are not scenes.

    use super::*;

    #[test]
    fn an_unknown_scene_name_is_refused() {
        assert_clean_failure(
            &run(&["snapshot", "--scene", "teapot", "-o", "x.png"]),
            "unknown scene 'teapot'",
        );
        assert_clean_failure(&run(&["--scene", "model.obj", "--port", "0"]), "model.obj");
    }
}

mod golden {
    //! The new scenes at frames 0 and 90 against approved images, as `golden` in tests.rs does
    //! for the cube. `GLSTREAM_BLESS=1` writes a missing golden (review it before committing).

    use super::*;

    #[test]
    fn pattern_frame_0() {
        crate::util::check_golden("pattern", "pattern", 0);
    }

    #[test]
    fn pattern_frame_90() {
        crate::util::check_golden("pattern", "pattern", 90);
    }

    #[test]
    fn shader_frame_0() {
        crate::util::check_golden("shader", path_str(&asset("waves.frag")), 0);
    }

    #[test]
    fn shader_frame_90() {
        crate::util::check_golden("shader", path_str(&asset("waves.frag")), 90);
    }

    #[test]
    fn gltf_frame_0() {
        crate::util::check_golden("gltf", path_str(&asset("model.gltf")), 0);
    }

    #[test]
    fn gltf_frame_90() {
        crate::util::check_golden("gltf", path_str(&asset("model.gltf")), 90);
    }
}
