//! `glstream bench --compress`: every codec asked for gets a row in the table and an entry in the
//! JSON line, lossless codecs are checked byte for byte by the bench itself (it fails
//! otherwise), and bad codec lists are one line. Speed is measured, never asserted.

use super::util::run;
use super::*;

/// Runs `glstream bench --compress ...` on tiny frames; returns the table lines and the JSON.
fn bench_compress(extra: &[&str]) -> (Vec<String>, serde_json::Value) {
    let args = [
        &[
            "bench", "--width", "96", "--height", "64", "--frames", "6", "--warmup", "2",
        ][..],
        extra,
    ]
    .concat();
    let out = run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench --compress failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let last = lines.last().expect("bench printed nothing");
    let json = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"));
    (lines, json)
}

#[test]
fn all_codecs_get_a_row_with_sane_numbers_on_the_cube() {
    let (lines, json) = bench_compress(&["--compress", "all", "--compress-threads", "2"]);
    let codecs = json["codecs"].as_array().expect("codecs");
    let names: Vec<&str> = codecs
        .iter()
        .map(|c| c["codec"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["qoi", "zstd:1", "lz4", "jpeg:80"], "{json}");
    assert_eq!(json["compress_threads"], 2, "{json}");
    assert_eq!(json["raw_bytes_per_frame"], 96 * 64 * 4, "{json}");
    for c in codecs {
        let name = c["codec"].as_str().unwrap();
        // The cube over its gradient compresses with every codec.
        assert!(c["ratio"].as_f64().unwrap() > 1.0, "{name}: {c}");
        for key in ["encode_ms", "decode_ms", "encode_fps", "decode_fps"] {
            assert!(c[key].as_f64().unwrap() > 0.0, "{name} {key}: {c}");
        }
        // Warm-up and measured frames, each encoded once.
        assert_eq!(c["encodes"], 8, "{name}: {c}");
        let lossless = name != "jpeg:80";
        assert_eq!(c["lossless"], lossless, "{name}");
        if lossless {
            assert!(c["psnr_db"].is_null(), "{name}: {c}");
        } else {
            assert!(c["psnr_db"].as_f64().unwrap() > 25.0, "{name}: {c}");
        }
        // Its row in the table: the name first, then the same ratio.
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", lines.join("\n")));
        let ratio: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(
            (ratio - c["ratio"].as_f64().unwrap()).abs() < 0.01,
            "{row} vs {c}"
        );
        assert_eq!(row.ends_with("exact"), lossless, "{row}");
    }
}

#[test]
fn levels_and_other_formats_are_measured_as_asked() {
    let (_, json) = bench_compress(&[
        "--compress",
        "zstd:5,lz4,zstd:5",
        "--format",
        "depth32f",
        "--compress-threads",
        "3",
    ]);
    let names: Vec<&str> = json["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["codec"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["zstd:5", "lz4"], "{json}");
    // 64 rows over 3 threads: strips of 32 rows (whole 16-row blocks), so 2.
    assert_eq!(json["strips"], 2, "{json}");
}

#[test]
fn bad_codec_lists_are_one_line() {
    for (args, needle) in [
        (&["bench", "--compress", "png"][..], "--compress png"),
        (&["bench", "--compress", "zstd:99"], "zstd:99"),
        (
            &["bench", "--compress", "qoi", "--format", "depth32f"],
            "cannot carry depth32f",
        ),
        (
            &["bench", "--compress", "all", "--compress-threads", "0"],
            "--compress-threads 0",
        ),
    ] {
        assert_clean_failure(&run(args), needle);
    }
}
