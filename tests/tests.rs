//! End-to-end tests of the real `glstream` binary: a real EGL context (Mesa's software device on
//! machines without a GPU), real TCP sockets on 127.0.0.1 with port 0, real bytes compared.
//! A missing EGL device fails these tests with a message saying what to install; none is skipped.

mod bench_compress;
mod compress;
mod control;
mod hardening;
mod http;
mod http_hardening;
mod lifecycle;
mod outputs_hardening;
mod python;
mod recipes;
mod scenes;
mod shm;
mod shm_hardening;
mod util;
mod zmq_hardening;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::thread;
use std::time::Duration;

use util::{
    Server, assert_clean_failure, distinct_bytes, read_blender_frame, read_frames, run, run_ok,
    snapshot_ok,
};

/// Small frames keep llvmpipe fast; odd sizes catch stride mistakes.
const W: &str = "98";
const H: &str = "66";

mod stream {
    //! The core stream: wire bytes, frame content, determinism across PBO counts.

    use super::*;

    #[test]
    fn client_reads_whole_frames_that_change_over_time() {
        let mut server = Server::start(&[
            "--width", W, "--height", H, "--frames", "6", "--policy", "lossless",
        ]);
        let mut client = server.connect();
        let frames = read_frames(&mut client, 6);
        for frame in &frames {
            // Python: struct.pack("L", 98*66*4) + struct.pack("H", 66) + struct.pack("H", 98)
            assert_eq!(frame.header, [0x10, 0x65, 0, 0, 0, 0, 0, 0, 66, 0, 98, 0]);
            assert_eq!(frame.pixels.len(), 98 * 66 * 4);
            assert!(distinct_bytes(&frame.pixels) > 40, "frame looks flat");
            assert!(
                frame.pixels.chunks(4).all(|px| px[3] == 255),
                "alpha must be opaque"
            );
        }
        for pair in frames.windows(2) {
            assert_ne!(
                pair[0].pixels, pair[1].pixels,
                "the cube must move between frames"
            );
        }
        // After --frames the server closes the stream cleanly and exits 0.
        assert!(read_blender_frame(&mut client).is_none());
        assert!(server.wait().success());
    }

    #[test]
    fn rows_are_bottom_up_like_opengl() {
        let server = Server::start(&["--width", W, "--height", H]);
        let frame = read_frames(&mut server.connect(), 1).remove(0);
        // The background is a gradient, dark at the bottom of the picture and light at the top;
        // in OpenGL order the first row in the buffer is the bottom one, so it is the darker.
        let luma = |row: usize| -> u32 {
            let start = row * 98 * 4;
            frame.pixels[start..start + 4 * 4]
                .iter()
                .map(|&b| b as u32)
                .sum()
        };
        assert!(
            luma(0) < luma(65),
            "first row {} vs last row {}",
            luma(0),
            luma(65)
        );
    }

    #[test]
    fn same_frame_index_gives_identical_bytes_for_any_pbo_count() {
        let runs: Vec<Vec<util::Frame>> = ["1", "2", "3"]
            .iter()
            .map(|k| {
                let server = Server::start(&[
                    "--width",
                    W,
                    "--height",
                    H,
                    "--frames",
                    "5",
                    "--policy",
                    "lossless",
                    "--pbo-count",
                    k,
                ]);
                read_frames(&mut server.connect(), 5)
            })
            .collect();
        for (k, run) in runs.iter().enumerate().skip(1) {
            for (i, frame) in run.iter().enumerate() {
                assert!(
                    *frame == runs[0][i],
                    "frame {i} differs between 1 and {} PBOs",
                    k + 1
                );
            }
        }
    }

    #[test]
    fn blender32_header_is_eight_bytes() {
        let server = Server::start(&["--width", W, "--height", H, "--header", "blender32"]);
        let mut client = server.connect();
        for _ in 0..2 {
            let mut header = [0u8; 8];
            client.read_exact(&mut header).unwrap();
            assert_eq!(header, [0x10, 0x65, 0, 0, 66, 0, 98, 0]);
            let mut pixels = vec![0u8; 98 * 66 * 4];
            client.read_exact(&mut pixels).unwrap();
        }
    }

    #[test]
    fn raw_mode_sends_bare_pixels_identical_to_blender_payloads() {
        let args = [
            "--width", W, "--height", H, "--frames", "3", "--policy", "lossless",
        ];
        let server = Server::start(&[&args[..], &["--header", "raw"]].concat());
        let mut raw = Vec::new();
        server.connect().read_to_end(&mut raw).unwrap();
        assert_eq!(
            raw.len(),
            3 * 98 * 66 * 4,
            "raw stream is exactly three frames"
        );
        let blender = read_frames(&mut Server::start(&args).connect(), 3);
        let payloads: Vec<u8> = blender.into_iter().flat_map(|f| f.pixels).collect();
        assert!(raw == payloads, "raw bytes differ from blender payloads");
    }

    #[test]
    fn a_client_finding_the_server_idle_starts_at_frame_zero() {
        let server = Server::start(&["--width", W, "--height", H, "--policy", "lossless"]);
        let first = {
            let mut client = server.connect();
            read_frames(&mut client, 4).remove(0)
        };
        // The first client is gone; once the server notices, it is idle again.
        assert!(server.wait_for_log("left after"), "{}", server.stderr());
        let again = read_frames(&mut server.connect(), 1).remove(0);
        assert!(
            again == first,
            "a client of an idle server must get frame 0"
        );
    }

    #[test]
    fn a_client_joining_mid_stream_gets_whole_frames() {
        let server = Server::start(&["--width", W, "--height", H]);
        let mut early = server.connect();
        read_frames(&mut early, 3);
        let mut late = server.connect();
        // Every frame the late client sees starts with a valid header (read_frames checks the
        // length field against the dimensions) and has a full payload.
        let frames = read_frames(&mut late, 3);
        assert!(frames.iter().all(|f| f.width == 98 && f.height == 66));
        read_frames(&mut early, 2);
    }
}

mod clients {
    //! Clients that misbehave cost only themselves, and what each client's socket gets.

    use super::*;
    use std::process::Command;

    #[test]
    fn clients_hanging_up_mid_frame_do_not_stop_the_stream() {
        let mut server = Server::start(&["--width", "320", "--height", "240"]);
        for round in 0..12 {
            let mut client = server.connect();
            let mut partial = vec![0u8; 12 + 1000 + round * 5000];
            client.read_exact(&mut partial).unwrap();
            if round % 2 == 0 {
                // Abort: unread data makes the kernel send a reset.
                drop(client);
            } else {
                client.shutdown(Shutdown::Both).unwrap();
            }
        }
        // Hang up before reading anything, too.
        for _ in 0..3 {
            drop(server.connect());
        }
        let frames = read_frames(&mut server.connect(), 3);
        assert!(frames.iter().all(|f| f.width == 320 && f.height == 240));
        assert!(server.is_running());
        assert!(server.wait_for_log("left after"), "hang-ups are logged");
        let log = server.stderr();
        assert!(!log.contains("panicked"));
    }

    #[test]
    fn one_client_leaving_does_not_disturb_another() {
        let server = Server::start(&["--width", W, "--height", H]);
        let mut steady = server.connect();
        read_frames(&mut steady, 2);
        let mut leaver = server.connect();
        let mut some = [0u8; 100];
        leaver.read_exact(&mut some).unwrap();
        drop(leaver);
        read_frames(&mut steady, 5);
    }

    /// The send buffer (`tb`, the kernel's sk_sndbuf) of the server's side of each established
    /// connection to `port`, as `ss` reports it from outside the process.
    fn server_send_buffers(port: u16) -> Vec<u64> {
        util::require_tool("ss", "-V", "iproute2");
        let out = Command::new("ss")
            .args([
                "-tmnH",
                "state",
                "established",
                &format!("( sport = :{port} )"),
            ])
            .output()
            .expect("run ss");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("tb")
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse().expect("ss prints tb<bytes>")
            })
            .collect()
    }

    #[test]
    fn tcp_consumers_get_the_send_buffer_asked_for() {
        // Linux doubles SO_SNDBUF for its bookkeeping: 64K asked is 131072 kept.
        let server = Server::start(&["--width", W, "--height", H, "--send-buffer", "64K"]);
        let mut client = server.connect();
        read_frames(&mut client, 2);
        assert_eq!(server_send_buffers(server.addr.port()), vec![131072]);
        assert!(server.wait_for_log("send buffer of 64 KiB"));
        read_frames(&mut client, 2);
        // `system` leaves the kernel's autotuning alone: not the size asked for above.
        let server = Server::start(&["--width", W, "--height", H, "--send-buffer", "system"]);
        let mut client = server.connect();
        read_frames(&mut client, 2);
        let buffers = server_send_buffers(server.addr.port());
        assert_eq!(buffers.len(), 1);
        assert_ne!(buffers[0], 131072);
    }

    #[test]
    fn a_client_that_sends_garbage_is_ignored() {
        let server = Server::start(&["--width", W, "--height", H]);
        let mut client = server.connect();
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        read_frames(&mut client, 2);
    }
}

mod input {
    //! Bad input: one line, non-zero exit, no panic.

    use super::*;

    #[test]
    fn zero_width_is_refused() {
        assert_clean_failure(&run(&["--width", "0", "--port", "0"]), "--width 0");
    }

    #[test]
    fn width_beyond_the_blender_header_is_refused() {
        assert_clean_failure(&run(&["--width", "70000", "--port", "0"]), "65535");
        assert_clean_failure(
            &run(&["--height", "70000", "--header", "blender32", "--port", "0"]),
            "65535",
        );
    }

    #[test]
    fn size_beyond_the_driver_limit_is_refused_after_gl_start() {
        let output = run(&[
            "--width", "70000", "--height", "10", "--header", "raw", "--port", "0",
        ]);
        assert_clean_failure(&output, "largest render target");
    }

    #[test]
    fn port_in_use_is_refused() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let output = run(&["--port", &port]);
        assert_clean_failure(&output, "cannot listen on 127.0.0.1");
        assert!(String::from_utf8_lossy(&output.stderr).contains("in use"));
    }

    #[test]
    fn unparsable_arguments_are_one_line() {
        assert_clean_failure(&run(&["--width", "wide"]), "--width");
        assert_clean_failure(&run(&["--no-such-flag"]), "--no-such-flag");
    }

    #[test]
    fn missing_arguments_are_named_with_the_subcommand_help() {
        let output = run(&["compare"]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        for needle in [
            "the following required arguments were not provided:",
            "<EXPECTED>",
            "<ACTUAL>",
            "see `glstream compare --help`",
        ] {
            assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
        }
        // recv with no source names every kind of source, not only --connect.
        let output = run(&["recv"]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        for source in [
            "--connect",
            "--unix",
            "--zmq-bind",
            "--zmq-connect",
            "--shm",
        ] {
            assert!(stderr.contains(source), "no {source} in:\n{stderr}");
        }
        let output = run(&["snapshot"]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--output"), "{stderr}");
        assert!(
            stderr.contains("see `glstream snapshot --help`"),
            "{stderr}"
        );
    }

    #[test]
    fn serve_options_before_a_subcommand_are_refused() {
        // Before the subcommand, --width is the default action's: it would render 800x600.
        let dir = scratch("options-before-subcommand");
        let out = dir.join("shot.png");
        let output = run(&["--width", "64", "snapshot", "-o", path_str(&out)]);
        assert_eq!(output.status.code(), Some(2));
        assert_clean_failure(&output, "--width before `snapshot`");
        assert!(!out.exists(), "nothing is rendered");
        assert_clean_failure(
            &run(&["--port", "0", "devices"]),
            "--port is a serve option",
        );
        // Global options may come first.
        run_ok(&["-q", "devices"]);
    }

    #[test]
    fn each_cause_is_printed_once() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let stderr = String::from_utf8_lossy(&run(&["--port", &port]).stderr).into_owned();
        assert_eq!(stderr.matches("os error 98").count(), 1, "{stderr}");

        let dir = scratch("causes-once");
        let not_png = dir.join("not-a.png");
        std::fs::write(&not_png, b"this is not a png at all").unwrap();
        let output = run(&["compare", path_str(&not_png), path_str(&not_png)]);
        assert_clean_failure(&output, "not-a.png");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The image crate's message, which it used to repeat as its own source.
        assert_eq!(
            stderr.matches("could not be determined").count(),
            1,
            "{stderr}"
        );

        let long = dir.join(format!("{}.sock", "s".repeat(120)));
        let output = run(&["--unix", path_str(&long)]);
        assert_clean_failure(&output, "cannot listen on");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.matches("SUN_LEN").count(), 1, "{stderr}");
    }

    #[test]
    fn a_texture_for_a_scene_without_one_is_refused() {
        let dir = scratch("texture-without-cube");
        let out = dir.join("shot.png");
        for scene in ["pattern", "tests/assets/waves.frag"] {
            let output = run(&[
                "snapshot",
                "--scene",
                scene,
                "--texture",
                "/nonexistent/texture.png",
                "-o",
                path_str(&out),
            ]);
            assert_clean_failure(&output, "--texture /nonexistent/texture.png: only the cube");
        }
        assert_clean_failure(
            &run(&[
                "--port",
                "0",
                "--scene",
                "pattern",
                "--texture",
                "/nonexistent/t.png",
            ]),
            "only the cube",
        );
        assert!(!out.exists());
    }

    #[test]
    fn missing_texture_names_the_file() {
        let output = run(&["--port", "0", "--texture", "/nonexistent/texture.png"]);
        assert_clean_failure(&output, "/nonexistent/texture.png");
    }

    #[test]
    fn corrupt_texture_names_the_file() {
        let dir = scratch("corrupt-texture");
        let path = dir.join("broken.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
        let output = run(&["--port", "0", "--texture", path.to_str().unwrap()]);
        assert_clean_failure(&output, "broken.png");
    }

    #[test]
    fn a_texture_bomb_is_refused_from_its_header_naming_the_file() {
        // 20000 x 20000 in a few hundred kilobytes: over llvmpipe's (and most GPUs') 16384
        // limit. Decoding it first would cost gigabytes; the header says enough.
        let dir = scratch("texture-bomb");
        let bomb = dir.join("bomb.png");
        util::write_png_bomb(&bomb, 20_000);
        let out = dir.join("x.png");
        let output = run(&[
            "snapshot",
            "--width",
            W,
            "--height",
            H,
            "--texture",
            path_str(&bomb),
            "-o",
            path_str(&out),
        ]);
        assert_clean_failure(&output, "bomb.png");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("20000x20000"), "{stderr}");
        assert!(!out.exists());
    }

    #[test]
    fn no_egl_device_says_what_to_install() {
        // glvnd with no vendor library: what a machine without Mesa's EGL looks like.
        for args in [
            &["--port", "0"][..],
            &["devices"],
            &["snapshot", "-o", "x.png"],
        ] {
            let output = util::glstream()
                .args(args)
                .env(
                    "__EGL_VENDOR_LIBRARY_FILENAMES",
                    "/nonexistent/egl_vendor.json",
                )
                .output()
                .unwrap();
            assert_clean_failure(
                &output,
                "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri",
            );
        }
    }

    #[test]
    fn a_very_deep_gltf_hierarchy_does_not_crash() {
        // A valid chain of 200,000 nested nodes: recursion would overflow the stack (an abort).
        let dir = scratch("deep-gltf");
        let n = 200_000;
        let nodes: Vec<String> = (0..n)
            .map(|i| {
                if i + 1 < n {
                    format!("{{\"children\":[{}]}}", i + 1)
                } else {
                    "{}".into()
                }
            })
            .collect();
        let json = format!(
            "{{\"asset\":{{\"version\":\"2.0\"}},\"scene\":0,\"scenes\":[{{\"nodes\":[0]}}],\"nodes\":[{}]}}",
            nodes.join(",")
        );
        let path = dir.join("deep.gltf");
        std::fs::write(&path, json).unwrap();
        let out = dir.join("deep.png");
        snapshot_ok(&out, (W, H), &["--scene", path_str(&path)]);
    }

    #[test]
    fn bad_device_index_is_refused() {
        assert_clean_failure(&run(&["--port", "0", "--device", "99"]), "EGL device 99");
    }
}

mod commands {
    //! Subcommands: devices, recv.

    use super::*;

    #[test]
    fn devices_lists_at_least_one_device() {
        let output = run(&["devices"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.starts_with("0: "),
            "no EGL device (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri):\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn recv_reads_and_saves_top_down_pngs() {
        let server = Server::start(&["--width", W, "--height", H, "--policy", "lossless"]);
        let dir = scratch("recv-save");
        let addr = server.addr.to_string();
        let output = run_ok(&[
            "recv",
            "--connect",
            &addr,
            "--frames",
            "4",
            "--save",
            dir.to_str().unwrap(),
            "--every",
            "2",
        ]);
        assert!(String::from_utf8_lossy(&output.stdout).contains("received 4 frames 98x66"));
        let mut saved: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        saved.sort();
        assert_eq!(saved, ["frame_000000.png", "frame_000002.png"]);
        let png = image::open(dir.join("frame_000000.png"))
            .unwrap()
            .to_rgba8();
        assert_eq!(png.dimensions(), (98, 66));
        // Top-down: the light end of the gradient is row 0.
        let top = png.get_pixel(0, 0).0;
        let bottom = png.get_pixel(0, 65).0;
        assert!(top[2] > bottom[2], "PNG row 0 must be the top of the image");
    }

    #[test]
    fn recv_rejects_a_stream_that_is_not_glstream() {
        // A peer that speaks another protocol: recv must fail with a clear message, not panic.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .unwrap();
        });
        assert_clean_failure(&run(&["recv", "--connect", &addr]), "bad header");
        peer.join().unwrap();
    }
}

mod recv {
    //! `glstream recv` against peers written here: stalls, trickles, chosen frame indices.

    use super::*;
    use std::net::TcpStream;
    use std::time::Instant;

    /// A peer on 127.0.0.1 that runs `serve` on the first connection; returns its address.
    fn peer(serve: impl FnOnce(TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            if let Ok((socket, _)) = listener.accept() {
                serve(socket);
            }
        });
        addr
    }

    #[test]
    fn a_server_that_stalls_mid_header_times_out() {
        let addr = peer(|mut socket| {
            socket.write_all(&[0x10]).unwrap();
            // Stall with the connection open until recv gives up and hangs up.
            let _ = socket.read(&mut [0u8; 1]);
        });
        let started = Instant::now();
        let output = run(&["recv", "--connect", &addr, "--timeout", "1"]);
        assert_clean_failure(
            &output,
            "no complete frame within 1 s: got 1 of 12 header bytes",
        );
        // Bounded by the test helper's deadline either way; this says the timeout was used.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn the_timeout_is_per_frame_not_per_read() {
        // A byte every 300 ms: every single read succeeds well within the timeout, but the
        // 12-byte header would take 3.6 s.
        let addr = peer(|mut socket| {
            for _ in 0..40 {
                if socket.write_all(&[0]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(300));
            }
        });
        let output = run(&["recv", "--connect", &addr, "--timeout", "1"]);
        assert_clean_failure(&output, "no complete frame within 1 s: got ");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(" of 12 header bytes"), "{stderr}");
    }

    #[test]
    fn bad_timeouts_are_refused() {
        assert_clean_failure(
            &run(&["recv", "--connect", "127.0.0.1:1", "--timeout", "0"]),
            "--timeout",
        );
    }

    /// A glstream v1 header for a 2x2 rgba8 frame with index `index`, and its payload.
    fn glstream_frame(index: u64) -> Vec<u8> {
        let mut frame = b"GLST".to_vec();
        frame.extend_from_slice(&1u16.to_le_bytes());
        frame.extend_from_slice(&56u16.to_le_bytes());
        for field in [2u32, 2, 1, 0, 8, 0] {
            frame.extend_from_slice(&field.to_le_bytes());
        }
        for field in [index, 0, 16] {
            frame.extend_from_slice(&field.to_le_bytes());
        }
        assert_eq!(frame.len(), 56);
        frame.extend((0..16).map(|i| i as u8 * 16));
        frame
    }

    fn saved_names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn save_names_files_by_the_glstream_header_index() {
        let addr = peer(|mut socket| {
            for index in [41, 42, 44] {
                socket.write_all(&glstream_frame(index)).unwrap();
            }
        });
        let dir = scratch("recv-save-header-index");
        run_ok(&[
            "recv",
            "--connect",
            &addr,
            "--header",
            "glstream",
            "--save",
            path_str(&dir),
        ]);
        assert_eq!(
            saved_names(&dir),
            ["frame_000041.png", "frame_000042.png", "frame_000044.png"]
        );
    }

    #[test]
    fn save_names_pattern_frames_by_their_index_like_snapshot() {
        let server = Server::start(&["--scene", "pattern", "--width", "96", "--height", "64"]);
        // A first client moves the stream on, so the next one joins mid-stream: its first frame
        // is not frame 0, and the count of frames received is not the index.
        let mut early = server.connect();
        read_frames(&mut early, 3);
        let dir = scratch("recv-save-pattern-index");
        let addr = server.addr.to_string();
        run_ok(&[
            "recv",
            "--connect",
            &addr,
            "--frames",
            "2",
            "--verify-pattern",
            "--max-drops",
            "1000000",
            "--save",
            path_str(&dir),
        ]);
        drop(early);
        drop(server);
        let names = saved_names(&dir);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            !names.contains(&"frame_000000.png".to_owned()),
            "named by count: {names:?}"
        );
        // Each file is the frame its name says: snapshot writes the same name with the same pixels.
        let index: u64 = names[0]["frame_".len()..names[0].len() - 4]
            .parse()
            .unwrap();
        let shots = scratch("recv-save-pattern-snapshot");
        let range = format!("{index}..={index}");
        run_ok(&[
            "snapshot",
            "--scene",
            "pattern",
            "--width",
            "96",
            "--height",
            "64",
            "--frames",
            &range,
            "-o",
            path_str(&shots),
        ]);
        let shot = image::open(shots.join(&names[0])).unwrap().to_rgba8();
        let saved = image::open(dir.join(&names[0])).unwrap().to_rgba8();
        assert!(shot == saved, "{} differs from snapshot's", names[0]);
    }
}

/// A fresh scratch directory under Cargo's per-target temp dir.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

mod snapshots {
    //! `glstream snapshot`: deterministic PNGs that match the stream.

    use super::*;

    #[test]
    fn two_snapshots_of_one_frame_are_byte_identical() {
        let dir = scratch("snapshot-twice");
        snapshot_ok(&dir.join("a.png"), (W, H), &["--frame", "17"]);
        snapshot_ok(
            &dir.join("b.png"),
            (W, H),
            &["--frame", "17", "--pbo-count", "1"],
        );
        let a = std::fs::read(dir.join("a.png")).unwrap();
        assert!(
            a == std::fs::read(dir.join("b.png")).unwrap(),
            "PNG bytes differ"
        );
        snapshot_ok(&dir.join("c.png"), (W, H), &["--frame", "18"]);
        assert!(
            a != std::fs::read(dir.join("c.png")).unwrap(),
            "frames 17 and 18 must differ"
        );
    }

    #[test]
    fn snapshot_equals_the_streamed_frame_flipped() {
        let dir = scratch("snapshot-vs-stream");
        let server = Server::start(&["--width", W, "--height", H, "--policy", "lossless"]);
        let streamed = read_frames(&mut server.connect(), 8).remove(7);
        drop(server);
        snapshot_ok(&dir.join("seven.png"), (W, H), &["--frame", "7"]);
        let png = image::open(dir.join("seven.png")).unwrap().to_rgba8();
        let stride = 98 * 4;
        let flipped: Vec<u8> = streamed
            .pixels
            .chunks(stride)
            .rev()
            .flatten()
            .copied()
            .collect();
        assert!(
            png.as_raw() == &flipped,
            "snapshot 7 differs from streamed frame 7, flipped"
        );
    }

    #[test]
    fn a_range_writes_a_numbered_sequence_equal_to_single_snapshots() {
        let dir = scratch("snapshot-range");
        let seq = dir.join("seq");
        let output = snapshot_ok(&seq, (W, H), &["--frames", "3..=5"]);
        let mut names: Vec<_> = std::fs::read_dir(&seq)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["frame_000003.png", "frame_000004.png", "frame_000005.png"]
        );
        snapshot_ok(&dir.join("four.png"), (W, H), &["--frame", "4"]);
        assert!(
            std::fs::read(seq.join("frame_000004.png")).unwrap()
                == std::fs::read(dir.join("four.png")).unwrap()
        );
        // Not a terminal here, so progress is plain log lines.
        assert!(String::from_utf8_lossy(&output.stderr).contains("(3/3)"));
    }

    /// The names in `dir`, sorted: what a command left behind.
    fn listing(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_refused_output_name_creates_nothing() {
        let dir = scratch("snapshot-refused-name");
        for name in ["x.jpg", "x", "x.png.bak"] {
            let output = run(&[
                "snapshot",
                "--width",
                W,
                "--height",
                H,
                "-o",
                path_str(&dir.join(name)),
            ]);
            assert_clean_failure(&output, name);
            assert!(
                String::from_utf8_lossy(&output.stderr).contains(".png"),
                "the error says what is accepted"
            );
        }
        assert_eq!(
            listing(&dir),
            Vec::<String>::new(),
            "nothing may be created"
        );
    }

    #[test]
    fn an_output_is_replaced_whole_not_rewritten_in_place() {
        // The output is a hard link to another file: writing in place would change that file
        // too; a temporary file renamed over the name leaves it alone.
        let dir = scratch("snapshot-replace");
        let keep = dir.join("keep.png");
        let out = dir.join("out.png");
        std::fs::write(&keep, b"precious").unwrap();
        std::fs::hard_link(&keep, &out).unwrap();
        snapshot_ok(&out, (W, H), &["--frame", "3"]);
        assert_eq!(std::fs::read(&keep).unwrap(), b"precious");
        assert_eq!(image::open(&out).unwrap().to_rgba8().dimensions(), (98, 66));
        // No temporary file is left beside it, for single frames or ranges.
        assert_eq!(listing(&dir), ["keep.png", "out.png"]);
        let seq = dir.join("seq");
        snapshot_ok(&seq, (W, H), &["--frames", "0..2"]);
        assert_eq!(listing(&seq), ["frame_000000.png", "frame_000001.png"]);
    }

    #[test]
    fn bad_snapshot_arguments_are_one_line() {
        assert_clean_failure(&run(&["snapshot", "--frames", "5..2", "-o", "x"]), "empty");
        assert_clean_failure(
            &run(&["snapshot", "--width", "0", "-o", "x.png"]),
            "--width 0",
        );
        let dir = scratch("snapshot-bad");
        assert_clean_failure(
            &run(&[
                "snapshot",
                "--width",
                W,
                "--height",
                H,
                "-o",
                path_str(&dir),
            ]),
            "is a directory",
        );
    }
}

mod compare {
    //! `glstream compare`: exit codes, the summary line, diff images.

    use super::*;
    use std::process::Output;

    fn compare(args: &[&str]) -> (Option<i32>, String, Output) {
        let output = run(&[&["compare"][..], args].concat());
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            output,
        )
    }

    /// Two renders of different frames plus a copy of the first nudged slightly.
    fn fixtures(dir: &std::path::Path) {
        for (frame, name) in [("0", "zero.png"), ("30", "thirty.png")] {
            let out = dir.join(name);
            snapshot_ok(&out, (W, H), &["--frame", frame]);
        }
        let mut nudged = image::open(dir.join("zero.png")).unwrap().to_rgba8();
        for x in 0..20 {
            let px = nudged.get_pixel_mut(x, 10);
            px.0[0] = px.0[0].saturating_add(2);
        }
        nudged.save(dir.join("nudged.png")).unwrap();
    }

    #[test]
    fn exit_codes_and_summaries() {
        let dir = scratch("compare");
        fixtures(&dir);
        let zero = dir.join("zero.png");
        let (code, out, _) = compare(&[path_str(&zero), path_str(&zero)]);
        assert_eq!(code, Some(0));
        assert!(
            out.starts_with("match: max delta 0, 0 pixels over tolerance 0"),
            "{out}"
        );

        let nudged = dir.join("nudged.png");
        let (code, out, _) = compare(&[path_str(&zero), path_str(&nudged)]);
        assert_eq!(code, Some(1), "exact comparison must see the nudge: {out}");
        assert!(out.contains("20 pixels over tolerance 0"), "{out}");
        let (code, out, _) = compare(&[path_str(&zero), path_str(&nudged), "--tolerance", "2"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("max delta 2"), "{out}");
        let (code, _, _) = compare(&[path_str(&zero), path_str(&nudged), "--max-outliers", "20"]);
        assert_eq!(code, Some(0));

        // A different frame is clearly different, even with a loose tolerance, and a diff image
        // appears beside ACTUAL by default.
        let thirty = dir.join("thirty.png");
        let (code, out, _) = compare(&[
            path_str(&zero),
            path_str(&thirty),
            "--tolerance",
            "8",
            "--max-outliers",
            "0.5%",
        ]);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.starts_with("MISMATCH"), "{out}");
        let diff = image::open(dir.join("thirty.diff.png")).unwrap().to_rgba8();
        assert_eq!(diff.dimensions(), (98, 66));
        assert!(
            diff.pixels().any(|p| p.0 == [255, 0, 0, 255]),
            "diff highlights pixels in red"
        );

        // --diff writes where asked even when the images match.
        let asked = dir.join("asked.png");
        let (code, _, _) = compare(&[path_str(&zero), path_str(&zero), "--diff", path_str(&asked)]);
        assert_eq!(code, Some(0));
        assert!(asked.exists());
    }

    #[test]
    fn the_diff_never_overwrites_an_input() {
        let dir = scratch("compare-diff-inputs");
        fixtures(&dir);
        let (zero, thirty) = (dir.join("zero.png"), dir.join("thirty.png"));
        let zero_bytes = std::fs::read(&zero).unwrap();
        let thirty_bytes = std::fs::read(&thirty).unwrap();
        let link = dir.join("link.png");
        std::os::unix::fs::symlink(&zero, &link).unwrap();
        let hard = dir.join("hard.png");
        std::fs::hard_link(&thirty, &hard).unwrap();
        // --diff naming an input, directly, through a symlink or a hard link: refused up front.
        for diff in [&zero, &thirty, &link, &hard] {
            let (code, _, output) =
                compare(&[path_str(&zero), path_str(&thirty), "--diff", path_str(diff)]);
            assert_eq!(code, Some(2));
            assert_clean_failure(&output, "would overwrite the input");
        }
        // --diff with a name that is not a PNG: refused, nothing created.
        let jpg = dir.join("d.jpg");
        let (code, _, output) =
            compare(&[path_str(&zero), path_str(&thirty), "--diff", path_str(&jpg)]);
        assert_eq!(code, Some(2));
        assert_clean_failure(&output, "d.jpg");
        assert!(!jpg.exists());
        // The default diff path (ACTUAL.diff.png) is EXPECTED: still a mismatch, exit 1, with a
        // warning instead of the diff.
        let expected = dir.join("shot.diff.png");
        let actual = dir.join("shot.png");
        std::fs::copy(&zero, &expected).unwrap();
        std::fs::copy(&thirty, &actual).unwrap();
        let (code, _, output) = compare(&[path_str(&expected), path_str(&actual)]);
        assert_eq!(code, Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("warning") && stderr.contains("shot.diff.png"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&expected).unwrap(), zero_bytes);
        assert_eq!(std::fs::read(&zero).unwrap(), zero_bytes);
        assert_eq!(std::fs::read(&thirty).unwrap(), thirty_bytes);
    }

    #[test]
    fn an_unwritable_diff_keeps_the_verdict() {
        let dir = scratch("compare-diff-unwritable");
        fixtures(&dir);
        let (zero, thirty) = (dir.join("zero.png"), dir.join("thirty.png"));
        // A folder that does not exist: unwritable even for root.
        let diff = dir.join("missing").join("d.png");
        let (code, out, output) = compare(&[
            path_str(&zero),
            path_str(&thirty),
            "--diff",
            path_str(&diff),
        ]);
        assert_eq!(code, Some(1), "a mismatch stays a mismatch: {out}");
        assert!(out.starts_with("MISMATCH"), "{out}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("warning") && stderr.contains("d.png"),
            "a warning names the diff: {stderr}"
        );
        let (code, _, _) = compare(&[path_str(&zero), path_str(&zero), "--diff", path_str(&diff)]);
        assert_eq!(code, Some(0), "a match stays a match");
    }

    #[test]
    fn an_image_bomb_is_refused_from_its_header() {
        let dir = scratch("compare-bomb");
        let bomb = dir.join("bomb.png");
        util::write_png_bomb(&bomb, 20_000);
        let small = dir.join("small.png");
        image::RgbaImage::new(4, 4).save(&small).unwrap();
        // Refused from the header, before the sizes are compared or anything is decoded (two
        // bombs of one size would otherwise decode to gigabytes and "match").
        for args in [
            [path_str(&small), path_str(&bomb)],
            [path_str(&bomb), path_str(&small)],
            [path_str(&bomb), path_str(&bomb)],
        ] {
            let (code, _, output) = compare(&args);
            assert_eq!(code, Some(2));
            assert_clean_failure(&output, "bomb.png");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("20000x20000") && stderr.contains("limit"),
                "{stderr}"
            );
        }
    }

    #[test]
    fn size_mismatch_and_corrupt_input_exit_2() {
        let dir = scratch("compare-bad");
        let small = dir.join("small.png");
        let big = dir.join("big.png");
        image::RgbaImage::new(4, 4).save(&small).unwrap();
        image::RgbaImage::new(4, 5).save(&big).unwrap();
        let (code, _, output) = compare(&[path_str(&small), path_str(&big)]);
        assert_eq!(code, Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("sizes differ: "));

        let corrupt = dir.join("corrupt.png");
        std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRgarbage").unwrap();
        let (code, _, output) = compare(&[path_str(&small), path_str(&corrupt)]);
        assert_eq!(code, Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("corrupt.png") && !stderr.contains("panicked"),
            "{stderr}"
        );

        let (code, _, _) = compare(&[path_str(&small), path_str(&dir.join("missing.png"))]);
        assert_eq!(code, Some(2));
    }
}

mod golden {
    //! Every built-in scene at two frame indices against approved images in tests/golden/
    //! (the other scenes' goldens are in scenes/mod.rs). A missing golden fails;
    //! `GLSTREAM_BLESS=1` writes it (a person reviews it before commit).

    use super::util::check_golden;

    #[test]
    fn cube_frame_0() {
        check_golden("cube", "cube", 0);
    }

    #[test]
    fn cube_frame_90() {
        check_golden("cube", "cube", 90);
    }
}

mod consumers {
    //! Many, slow, and vanishing consumers; other transports; shutdown.

    use super::util::stalled_client;
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::os::unix::net::{UnixListener, UnixStream};

    fn digest(frame: &util::Frame) -> u64 {
        let mut h = DefaultHasher::new();
        frame.pixels.hash(&mut h);
        h.finish()
    }

    /// Reads Blender frames until the server closes the stream; returns their digests.
    fn read_all(stream: &mut impl Read) -> Vec<u64> {
        std::iter::from_fn(|| read_blender_frame(stream))
            .map(|f| digest(&f))
            .collect()
    }

    fn rss_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn eight_clients_beside_a_stalled_one_get_every_frame() {
        let mut server = Server::start(&[
            "--width",
            "320",
            "--height",
            "240",
            // Paced at a rate any reader keeps up with even on a loaded machine: the point is
            // that the stalled client does not slow the others, not how fast they are.
            "--fps",
            "10",
            "--frames",
            "40",
            "--send-timeout",
            "3",
        ]);
        let _stalled = stalled_client(server.addr);
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let mut client = server.connect();
                thread::spawn(move || read_all(&mut client))
            })
            .collect();
        let lists: Vec<Vec<u64>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        // The stalled client did not hold anyone back: every reader got every frame from the
        // one it joined at to the last, none skipped (a contiguous tail of the longest list).
        let longest = lists.iter().max_by_key(|l| l.len()).unwrap();
        assert!(
            longest.len() >= 37,
            "a reader got only {} of 40 frames",
            longest.len()
        );
        for list in &lists {
            assert!(list.len() >= 33, "a reader got only {} frames", list.len());
            assert_eq!(
                list[..],
                longest[longest.len() - list.len()..],
                "a reader skipped frames"
            );
        }
        assert!(server.wait().success());
    }

    #[test]
    fn fifty_clients_hanging_up_mid_frame() {
        // Room for all fifty at once, so each of them really gets a writer that sees it go.
        let mut server =
            Server::start(&["--width", "320", "--height", "240", "--max-clients", "64"]);
        let addr = server.addr;
        let quitters: Vec<_> = (0..50)
            .map(|i| {
                thread::spawn(move || {
                    let mut client = std::net::TcpStream::connect(addr).unwrap();
                    let mut partial = vec![0u8; 100 + i * 3000];
                    let _ = client.read_exact(&mut partial);
                })
            })
            .collect();
        for q in quitters {
            q.join().unwrap();
        }
        let frames = read_frames(&mut server.connect(), 3);
        assert_eq!(frames[2].pixels.len(), 320 * 240 * 4);
        assert!(server.is_running());
    }

    #[test]
    fn lossless_policy_delivers_every_frame_in_order_to_a_slow_client() {
        let server = Server::start(&[
            "--width", W, "--height", H, "--frames", "20", "--policy", "lossless",
        ]);
        let mut fast = server.connect();
        let mut slow = server.connect();
        let slow_reader = thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(frame) = read_blender_frame(&mut slow) {
                got.push(digest(&frame));
                thread::sleep(Duration::from_millis(30));
            }
            got
        });
        let fast_list = read_all(&mut fast);
        let slow_list = slow_reader.join().unwrap();
        assert_eq!(fast_list.len(), 20);
        // Joined within a frame of each other; the slow one still gets everything from there on.
        assert!(slow_list.len() >= 18, "slow client got {}", slow_list.len());
        assert_eq!(slow_list[..], fast_list[20 - slow_list.len()..]);
        // And the stream is the deterministic one: frame 0 first.
        let first = read_frames(
            &mut Server::start(&["--width", W, "--height", H]).connect(),
            1,
        );
        assert_eq!(fast_list[0], digest(&first[0]));
    }

    #[test]
    fn memory_stays_bounded_with_a_stalled_client() {
        let server = Server::start(&[
            "--width",
            "640",
            "--height",
            "480",
            "--fps",
            "60",
            "--send-timeout",
            "60",
        ]);
        let _stalled = stalled_client(server.addr);
        let pid = server_pid(&server);
        let mut reader = server.connect();
        read_frames(&mut reader, 30);
        let before = rss_kib(pid);
        read_frames(&mut reader, 150);
        let after = rss_kib(pid);
        // A leak of one frame per frame would be 1.2 MB a frame, 180 MB here.
        assert!(
            after < before + 16 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }

    fn server_pid(server: &Server) -> u32 {
        server.pid()
    }

    #[test]
    fn max_clients_refuses_extra_connections() {
        let server = Server::start(&["--width", W, "--height", H, "--max-clients", "2"]);
        let mut a = server.connect();
        let mut b = server.connect();
        read_frames(&mut a, 1);
        read_frames(&mut b, 1);
        let mut extra = server.connect();
        let mut buf = [0u8; 1];
        assert_eq!(
            extra.read(&mut buf).unwrap_or(0),
            0,
            "the third client must be closed"
        );
        assert!(
            server.wait_for_log("--max-clients 2"),
            "{}",
            server.stderr()
        );
        read_frames(&mut a, 2);
    }

    #[test]
    fn connect_mode_reaches_a_listening_consumer_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::start_with(
            &["--width", W, "--height", H, "--connect", &addr.to_string()],
            "connecting to",
        );
        let (mut first, _) = listener.accept().unwrap();
        first.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        let before = read_frames(&mut first, 3);
        // The consumer goes away completely, then comes back on the same port.
        drop(first);
        drop(listener);
        assert!(server.wait_for_log("left after"), "{}", server.stderr());
        let listener = TcpListener::bind(addr).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        second.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        let after = read_frames(&mut second, 2);
        assert!(
            after[0] == before[0],
            "a reconnected consumer starts at frame 0 again"
        );
        assert!(server.wait_for_log("connected to"));
    }

    #[test]
    fn unix_socket_stream_and_stale_socket_replacement() {
        let dir = scratch("unix");
        let path = dir.join("glstream.sock");
        // A stale socket file: bound once, nobody listening any more.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = Server::start_with(
            &["--width", W, "--height", H, "--unix", path_str(&path)],
            "listening on unix:",
        );
        let mut client = UnixStream::connect(&path).unwrap();
        client.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        let frames = read_frames(&mut client, 2);
        assert_eq!(frames[0].pixels.len(), 98 * 66 * 4);
        // A live socket is not taken over.
        let output = run(&["--unix", path_str(&path)]);
        assert_clean_failure(&output, "another server is listening");
        drop(client);
        // recv reads Unix sockets too.
        run_ok(&["recv", "--unix", path_str(&path), "--frames", "3"]);
        drop(server);
    }

    #[test]
    fn stdout_carries_exactly_the_frames() {
        let output = run_ok(&[
            "--stdout", "--header", "raw", "--width", W, "--height", H, "--frames", "5",
        ]);
        assert_eq!(output.stdout.len(), 5 * 98 * 66 * 4);
        let output = run(&["--stdout", "--width", W, "--height", H, "--frames", "4"]);
        assert_eq!(output.stdout.len(), 4 * (12 + 98 * 66 * 4));
        let mut cursor = &output.stdout[..];
        assert_eq!(read_frames(&mut cursor, 4).len(), 4);
        // Logs stay on stderr.
        assert!(String::from_utf8_lossy(&output.stderr).contains("GL_RENDERER"));
    }

    #[test]
    fn sigterm_does_not_wait_for_a_stalled_lossless_client() {
        // The send timeout is two minutes; the stalled client holds a buffer the renderer needs.
        // SIGTERM must not wait for either (the bound below is a quarter of that timeout, not a
        // speed requirement).
        let mut server = Server::start(&[
            "--width",
            "640",
            "--height",
            "480",
            "--policy",
            "lossless",
            "--send-timeout",
            "120",
            // Debug logs say when the stalled client was accepted.
            "-v",
        ]);
        let _stalled = stalled_client(server.addr);
        assert!(server.wait_for_log(" connected"), "{}", server.stderr());
        server.signal("TERM");
        assert!(server.wait_at_most(Duration::from_secs(30)).success());
    }

    #[test]
    fn sigterm_mid_stream_leaves_whole_frames_and_exits_zero() {
        let mut server = Server::start(&["--width", "320", "--height", "240"]);
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let mut client = server.connect();
                thread::spawn(move || {
                    let mut all = Vec::new();
                    client.read_to_end(&mut all).unwrap();
                    all
                })
            })
            .collect();
        read_frames(&mut server.connect(), 5);
        server.signal("TERM");
        assert!(
            server.wait().success(),
            "SIGTERM must exit 0:\n{}",
            server.stderr()
        );
        for client in clients {
            let bytes = client.join().unwrap();
            let frame = 12 + 320 * 240 * 4;
            assert!(bytes.len() >= frame, "a client got no frame at all");
            assert_eq!(bytes.len() % frame, 0, "a client got a torn frame");
            let mut cursor = &bytes[..];
            read_frames(&mut cursor, bytes.len() / frame);
        }
    }
}

mod formats {
    //! Pixel formats, GPU flip, depth, the glstream header and pattern verification end to end.

    use super::*;

    /// The payloads of `frames` frames from `glstream --stdout --header raw ARGS`.
    fn raw_frames(args: &[&str], frames: usize, bytes_per_frame: usize) -> Vec<Vec<u8>> {
        let count = frames.to_string();
        let all = [
            &[
                "--stdout", "--header", "raw", "--width", W, "--height", H, "--frames", &count,
            ][..],
            args,
        ]
        .concat();
        let output = run_ok(&all);
        assert_eq!(
            output.stdout.len(),
            frames * bytes_per_frame,
            "byte count for {args:?}"
        );
        output
            .stdout
            .chunks(bytes_per_frame)
            .map(<[u8]>::to_vec)
            .collect()
    }

    const PIXELS: usize = 98 * 66;

    #[test]
    fn every_format_has_its_byte_count_and_derives_from_rgba() {
        let rgba = raw_frames(&[], 2, PIXELS * 4);
        let bgra = raw_frames(&["--format", "bgra8"], 2, PIXELS * 4);
        let rgb = raw_frames(&["--format", "rgb8"], 2, PIXELS * 3);
        let gray = raw_frames(&["--format", "gray8"], 2, PIXELS);
        raw_frames(&["--format", "depth32f"], 2, PIXELS * 4);
        for i in 0..2 {
            for (p, px) in rgba[i].chunks(4).enumerate() {
                assert_eq!(&bgra[i][p * 4..p * 4 + 4], &[px[2], px[1], px[0], px[3]]);
                assert_eq!(&rgb[i][p * 3..p * 3 + 3], &px[..3]);
                let luma = 0.2126 * px[0] as f32 + 0.7152 * px[1] as f32 + 0.0722 * px[2] as f32;
                assert!(
                    (gray[i][p] as f32 - luma).abs() <= 1.0,
                    "gray {} vs luma {luma}",
                    gray[i][p]
                );
            }
        }
    }

    #[test]
    fn blender_headers_carry_the_format_length() {
        let output = run_ok(&[
            "--stdout", "--format", "gray8", "--width", W, "--height", H, "--frames", "1",
        ]);
        assert_eq!(&output.stdout[..8], &(PIXELS as u64).to_le_bytes());
        assert_eq!(output.stdout.len(), 12 + PIXELS);
    }

    #[test]
    fn flip_reverses_rows_on_the_gpu() {
        for (format, bpp) in [("rgba8", 4), ("gray8", 1)] {
            let bottom_up = raw_frames(&["--format", format], 1, PIXELS * bpp).remove(0);
            let top_down = raw_frames(&["--format", format, "--flip"], 1, PIXELS * bpp).remove(0);
            let stride = 98 * bpp;
            let reversed: Vec<u8> = bottom_up.chunks(stride).rev().flatten().copied().collect();
            assert!(
                top_down == reversed,
                "{format}: --flip must be the rows reversed"
            );
        }
        // And row 0 of a flipped frame is the top of the picture: the light end of the gradient.
        let top_down = raw_frames(&["--flip"], 1, PIXELS * 4).remove(0);
        let last_row = (66 - 1) * 98 * 4;
        assert!(
            top_down[2] > top_down[last_row + 2],
            "row 0 must be the top"
        );
    }

    #[test]
    fn depth_is_in_unit_range_with_background_at_one() {
        let depth = raw_frames(&["--format", "depth32f"], 1, PIXELS * 4).remove(0);
        let values: Vec<f32> = depth
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert!(
            values.iter().all(|d| (0.0..=1.0).contains(d)),
            "depth outside [0, 1]"
        );
        assert_eq!(values[0], 1.0, "the background corner is at the far plane");
        let nearer = values.iter().filter(|&&d| d < 1.0).count();
        assert!(
            nearer > PIXELS / 20,
            "the cube must write depth ({nearer} pixels)"
        );
    }

    #[test]
    fn glstream_header_describes_each_frame() {
        let output = run_ok(&[
            "--stdout", "--header", "glstream", "--format", "rgb8", "--flip", "--width", W,
            "--height", H, "--frames", "3",
        ]);
        let frame_len = 56 + PIXELS * 3;
        assert_eq!(output.stdout.len(), 3 * frame_len);
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut last_stamp = 0;
        for (i, frame) in output.stdout.chunks(frame_len).enumerate() {
            let u32_at = |at: usize| u32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
            let u64_at = |at: usize| u64::from_le_bytes(frame[at..at + 8].try_into().unwrap());
            assert_eq!(&frame[0..4], b"GLST");
            assert_eq!(&frame[4..8], &[1, 0, 56, 0], "version 1, 56 bytes");
            assert_eq!((u32_at(8), u32_at(12)), (98, 66));
            assert_eq!(u32_at(16), 3, "rgb8");
            assert_eq!(u32_at(20), 1, "top-down flag");
            assert_eq!(u32_at(24), 98 * 3, "stride");
            assert_eq!(u64_at(32), i as u64, "frame index");
            let stamp = u64_at(40);
            assert!(stamp >= last_stamp && stamp <= now_ns && now_ns - stamp < 600_000_000_000);
            last_stamp = stamp;
            assert_eq!(u64_at(48), (PIXELS * 3) as u64);
        }
    }

    #[test]
    fn recv_verifies_the_pattern_and_catches_a_non_pattern_stream() {
        let server = Server::start(&[
            "--scene", "pattern", "--width", "160", "--height", "120", "--policy", "lossless",
        ]);
        let addr = server.addr.to_string();
        let output = run_ok(&[
            "recv",
            "--connect",
            &addr,
            "--frames",
            "40",
            "--verify-pattern",
        ]);
        assert!(
            String::from_utf8_lossy(&output.stdout)
                .contains("pattern: frames 0..=39 in order, 0 dropped"),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        drop(server);
        // With the glstream header and --flip, recv uses the header's index and orientation.
        let server = Server::start(&[
            "--scene", "pattern", "--width", "160", "--height", "120", "--policy", "lossless",
            "--header", "glstream", "--flip",
        ]);
        let addr = server.addr.to_string();
        run_ok(&[
            "recv",
            "--connect",
            &addr,
            "--header",
            "glstream",
            "--frames",
            "10",
            "--verify-pattern",
        ]);
        drop(server);
        let server = Server::start(&["--width", "160", "--height", "120"]);
        let addr = server.addr.to_string();
        assert_clean_failure(
            &run(&[
                "recv",
                "--connect",
                &addr,
                "--frames",
                "3",
                "--verify-pattern",
            ]),
            "not a pattern frame",
        );
    }

    #[test]
    fn snapshots_of_other_formats_are_pngs_of_the_matching_kind() {
        let dir = scratch("format-snapshots");
        for (format, color) in [
            ("gray8", image::ColorType::L8),
            ("rgb8", image::ColorType::Rgb8),
            ("depth32f", image::ColorType::L16),
            ("bgra8", image::ColorType::Rgba8),
        ] {
            let out = dir.join(format!("{format}.png"));
            snapshot_ok(&out, (W, H), &["--format", format]);
            assert_eq!(image::open(&out).unwrap().color(), color, "{format}");
        }
        // bgra8 is written back as RGBA, so it matches the plain snapshot.
        let plain = dir.join("rgba8.png");
        snapshot_ok(&plain, (W, H), &[]);
        let a = image::open(&plain).unwrap().to_rgba8();
        let b = image::open(dir.join("bgra8.png")).unwrap().to_rgba8();
        assert!(a == b);
        // A PNG is always top-down: --flip would do nothing, so it is refused, and writes
        // nothing.
        let flipped = dir.join("flipped.png");
        assert_clean_failure(
            &util::snapshot(&flipped, (W, H), &["--flip"]),
            "--flip: a snapshot is always written top-down",
        );
        assert!(!flipped.exists());
    }
}

/// `glstream bench`: every configuration runs, the JSON last line is well-formed, and the measured
/// frames allocate nothing. Speed is measured by the bench, never asserted here.
mod bench {
    use super::util::bench;
    use super::*;

    #[test]
    fn every_configuration_runs_and_the_frame_loop_does_not_allocate() {
        let report = bench(&[]);
        assert_eq!(report["allocs_per_frame"].as_f64(), Some(0.0), "{report}");
        assert_eq!(report["allocations"], 0, "{report}");
        for key in ["render_fps", "readback_fps", "e2e_fps"] {
            assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
        }
        let configs = report["configs"].as_array().unwrap();
        let has = |mode: &str, pbos: u64, transport: &str| {
            configs.iter().any(|c| {
                c["mode"] == mode
                    && (mode == "render" || c["pbo_count"] == pbos)
                    && c["transport"] == transport
            })
        };
        assert!(has("render", 1, "-"), "{report}");
        for pbos in 1..=3 {
            assert!(has("readback", pbos, "-"), "readback {pbos}: {report}");
            for transport in ["tcp", "unix"] {
                assert!(has("e2e", pbos, transport), "e2e {pbos} {transport}");
            }
        }
        assert_eq!(configs.len(), 1 + 3 + 6);
        for c in configs {
            assert!(c["fps"].as_f64().unwrap() > 0.0, "{c}");
            assert_eq!(c["allocs_per_frame"].as_f64(), Some(0.0), "{c}");
            assert!(c["ms"]["render"].as_f64().is_some(), "{c}");
        }
    }

    #[test]
    fn a_shader_scene_streams_without_allocating_too() {
        let report = bench(&[
            "--scene",
            "tests/assets/waves.frag",
            "--pbo-counts",
            "2",
            "--transports",
            "unix",
        ]);
        assert_eq!(report["allocations"], 0, "{report}");
        assert_eq!(report["configs"].as_array().unwrap().len(), 3);
        assert!(report["e2e_fps"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn bad_bench_arguments_are_one_line() {
        for (args, needle) in [
            (&["bench", "--pbo-counts", "0"][..], "--pbo-counts 0"),
            (&["bench", "--frames", "0"], "--frames 0"),
            (&["bench", "--repeats", "0"], "--repeats 0"),
            (
                &["bench", "--transports", "carrier-pigeon"],
                "carrier-pigeon",
            ),
        ] {
            assert_clean_failure(&run(args), needle);
        }
    }
}

mod zmq {
    //! ZeroMQ outputs against real consumers: a render farm of three shards into one collector,
    //! pub subscribers, a collector restarted under running producers, SIGTERM while the push
    //! peer is stalled, and the Python example (pyzmq + numpy from `<repo>/.venv`).

    use super::*;
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::Instant;

    /// Frames of 76,800 bytes: over pyzmq's 64 KiB threshold, so its `copy=False` is zero-copy.
    pub(crate) const ZW: &str = "160";
    pub(crate) const ZH: &str = "120";

    /// The first endpoint on a ready line such as `zmq push listening on tcp://127.0.0.1:PORT`.
    pub(crate) fn endpoint(server: &Server, prefix: &str) -> String {
        let line = server.ready_line();
        let rest = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("ready line {line:?} does not start with {prefix:?}"));
        rest.split([' ', ',']).next().unwrap().to_string()
    }

    /// A `recv --zmq-bind tcp://127.0.0.1:*` collector and the endpoint it bound.
    pub(crate) fn collector(args: &[&str]) -> (Server, String) {
        let args = [&["recv", "--zmq-bind", "tcp://127.0.0.1:*"][..], args].concat();
        let server = Server::start_with(&args, "listening on ");
        let endpoint = endpoint(&server, "listening on ");
        (server, endpoint)
    }

    /// A producer of the pattern scene at the ZeroMQ tests' size.
    pub(crate) fn producer(args: &[&str], ready: &str) -> Server {
        let size = ["--scene", "pattern", "--width", ZW, "--height", ZH];
        Server::start_with(&[&size[..], args].concat(), ready)
    }

    /// The `indices A..=B` a `recv --verify-pattern` reported.
    fn index_range(stdout: &str) -> (u64, u64) {
        let range = stdout
            .split("indices ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no indices in {stdout:?}"));
        let (first, last) = range.split_once("..=").unwrap();
        (first.parse().unwrap(), last.parse().unwrap())
    }

    #[test]
    fn three_shards_into_one_collector_give_frames_0_to_89_once_each() {
        let dir = scratch("zmq-farm");
        let (mut collector, endpoint) = collector(&[
            "--frames",
            "90",
            "--verify-pattern",
            "--save",
            path_str(&dir),
        ]);
        let producers: Vec<Server> = (0..3)
            .map(|k| {
                let shard = format!("{k}/3");
                producer(
                    &[
                        "--zmq-connect",
                        &endpoint,
                        "--shard",
                        &shard,
                        "--frames",
                        "90",
                    ],
                    "zmq push connecting to ",
                )
            })
            .collect();
        assert!(collector.wait().success(), "{}", collector.stderr());
        let report = collector.stdout();
        assert!(
            report.contains("90 distinct frames, indices 0..=89, 0 missing, 0 duplicates"),
            "{report}"
        );
        for mut producer in producers {
            // Each renders its 30 frames, sees them delivered, and exits on its own.
            assert!(producer.wait().success(), "{}", producer.stderr());
            assert!(producer.stderr().contains("done after 30 frames"));
        }
        // Files are named by frame index: one ordered sequence however the frames arrived.
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let expected: Vec<String> = (0..90).map(|i| format!("frame_{i:06}.png")).collect();
        assert_eq!(names, expected);
        // Frame i is the same image whichever producer rendered it: shard 0 rendered 45.
        let shot = scratch("zmq-farm-snapshot").join("frame_45.png");
        run_ok(&[
            "snapshot",
            "--scene",
            "pattern",
            "--width",
            ZW,
            "--height",
            ZH,
            "--frame",
            "45",
            "-o",
            path_str(&shot),
        ]);
        run_ok(&[
            "compare",
            path_str(&shot),
            path_str(&dir.join("frame_000045.png")),
        ]);
    }

    #[test]
    fn two_pub_subscribers_each_get_whole_untorn_frames() {
        let mut producer = producer(
            &[
                "--zmq-bind",
                "tcp://127.0.0.1:*",
                "--zmq-pattern",
                "pub",
                "--fps",
                "30",
            ],
            "zmq pub listening on ",
        );
        let endpoint = endpoint(&producer, "zmq pub listening on ");
        let subscribers: Vec<_> = (0..2)
            .map(|_| {
                let endpoint = endpoint.clone();
                thread::spawn(move || {
                    // --verify-pattern fails on a frame whose pixels do not carry the index
                    // its header names: a torn or mixed-up frame.
                    run(&[
                        "recv",
                        "--zmq-connect",
                        &endpoint,
                        "--zmq-pattern",
                        "sub",
                        "--frames",
                        "20",
                        "--verify-pattern",
                        "--max-drops",
                        "1000",
                    ])
                })
            })
            .collect();
        for subscriber in subscribers {
            let output = subscriber.join().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.contains("20 distinct frames"), "{stdout}");
        }
        // Both gone: the producer goes idle and keeps running.
        assert!(producer.wait_for_log("left after"), "{}", producer.stderr());
        assert!(producer.is_running());
        producer.signal("TERM");
        assert!(producer.wait().success());
    }

    #[test]
    fn a_pub_producer_with_no_subscriber_renders_nothing() {
        let mut producer = producer(
            &["--zmq-bind", "tcp://127.0.0.1:*", "--zmq-pattern", "pub"],
            "zmq pub listening on ",
        );
        thread::sleep(Duration::from_secs(1));
        producer.signal("TERM");
        assert!(producer.wait().success());
        let log = producer.stderr();
        assert!(log.contains("streamed 0 frames"), "{log}");
    }

    #[test]
    fn a_restarted_collector_is_reconnected_to_without_restarting_the_producer() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let mut producer = producer(
            &["--zmq-connect", &endpoint, "--fps", "30"],
            "zmq push connecting to ",
        );
        let collect = || {
            let output = run_ok(&[
                "recv",
                "--zmq-bind",
                &endpoint,
                "--frames",
                "10",
                "--verify-pattern",
            ]);
            index_range(&String::from_utf8_lossy(&output.stdout))
        };
        // The producer started first: its first frames waited for the collector.
        assert_eq!(collect(), (0, 9));
        // The collector is gone; the producer waits for a peer, then ZeroMQ reconnects it.
        thread::sleep(Duration::from_millis(300));
        assert!(producer.is_running());
        let (first, last) = collect();
        assert!(first >= 10 && last == first + 9, "{first}..={last}");
        assert!(producer.is_running(), "the producer was never restarted");
        producer.signal("TERM");
        assert!(producer.wait().success());
    }

    #[test]
    fn sigterm_exits_within_a_second_while_the_push_peer_is_stalled() {
        // A peer that accepts the connection and then neither reads nor answers: libzmq queues
        // up to the high-water mark for it, and the producer waits for room.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        let mut producer = Server::start_with(
            &[
                "--zmq-connect",
                &endpoint,
                "--zmq-hwm",
                "1",
                "--width",
                "640",
                "--height",
                "480",
                "--send-timeout",
                "120",
            ],
            "zmq push connecting to ",
        );
        let (_stalled, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_secs(1));
        let signalled = Instant::now();
        producer.signal("TERM");
        let status = producer.wait_at_most(Duration::from_secs(10));
        let took = signalled.elapsed();
        let log = producer.stderr();
        assert!(status.success(), "{log}");
        assert!(
            !log.contains("exiting now"),
            "the signal watchdog had to end it:\n{log}"
        );
        assert!(took < Duration::from_secs(1), "took {took:?}:\n{log}");
        // It waited for the peer rather than rendering on: the ring and one spare at most.
        let rendered: u64 = log
            .split("done after ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame count in:\n{log}"));
        assert!(
            rendered <= 8,
            "rendered {rendered} frames for a stalled peer"
        );
    }

    #[test]
    fn bad_endpoints_fail_in_one_line_before_gl_starts() {
        let output = run(&["--zmq-bind", "inproc://frames"]);
        assert_clean_failure(&output, "--zmq-bind inproc://frames");
        let output = run(&["--zmq-bind", "tcp://192.0.2.1:5555"]);
        assert_clean_failure(&output, "cannot bind tcp://192.0.2.1:5555");
        assert!(!String::from_utf8_lossy(&output.stderr).contains("GL_RENDERER"));
        let output = run(&["--shard", "3/3"]);
        assert_clean_failure(&output, "--shard 3/3");
        let output = run(&["recv", "--zmq-connect", "localhost:5555"]);
        assert_clean_failure(&output, "--zmq-connect localhost:5555");
    }

    /// `<repo>/.venv/bin/python` with pyzmq and numpy; fails (never skips) saying how to make it.
    fn python() -> PathBuf {
        let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        let how = "create it with `python3 -m venv .venv && .venv/bin/pip install pyzmq numpy` \
                   at the repository root (.ci/run does)";
        assert!(python.exists(), "{} is missing: {how}", python.display());
        let check = Command::new(&python)
            .args(["-c", "import zmq, numpy"])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{} cannot import zmq and numpy ({}): {how}",
            python.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
        python
    }

    #[test]
    fn the_python_example_receives_frames_zero_copy_from_a_push_producer() {
        let python = python();
        let producer = producer(
            &["--zmq-bind", "tcp://127.0.0.1:*", "--frames", "10"],
            "zmq push listening on ",
        );
        let endpoint = endpoint(&producer, "zmq push listening on ");
        let mut command = Command::new(python);
        command
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/zmq_consumer.py"))
            .args(["--connect", &endpoint, "--frames", "10", "--checksum"]);
        let output = util::run_command(command);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(summary["frames"], 10);
        assert_eq!(
            summary["indices"],
            serde_json::json!((0..10).collect::<Vec<_>>())
        );
        assert_eq!(
            (&summary["width"], &summary["height"], &summary["channels"]),
            (
                &serde_json::json!(160),
                &serde_json::json!(120),
                &serde_json::json!(4)
            )
        );
        assert_eq!(summary["zero_copy"], true, "numpy copied the payload");
        // The pixels are the stream's: frame 0's byte sum matches the same frame from stdout.
        let raw = run_ok(&[
            "--stdout", "--header", "raw", "--scene", "pattern", "--width", ZW, "--height", ZH,
            "--frames", "1",
        ]);
        let sum: u64 = raw.stdout.iter().map(|&b| b as u64).sum();
        assert_eq!(summary["byte_sums"]["0"], sum);
    }
}
