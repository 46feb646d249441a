//! Control requests (`--control`, `snapshot --request`): one JSON object in, one JSON object
//! out. This module is the contract's parsing and answering, with no GL and no socket: what a
//! request may say, and the one-line error for anything it cannot.
//!
//! ```json
//! {"id": 7, "frame": 120,
//!  "uniforms": {"u_color": [1, 0, 0], "u_speed": 2.0},
//!  "camera": {"eye": [0, 1, 4], "target": [0, 0, 0], "up": [0, 1, 0], "fov_deg": 45},
//!  "nodes": {"Wheel": {"translation": [0, 0, 1], "rotation": [0, 0, 0, 1], "scale": [1, 1, 1]}}}
//! ```
//!
//! Every key but `id` is optional, and settings persist until changed. The answer is
//! `{"id": 7, "ok": true, "frame": 120}` once the frame reflecting the request has been handed
//! to every output, or `{"id": 7, "ok": false, "error": "..."}` for anything that cannot be
//! applied, with nothing of it applied.

use glam::{Quat, Vec3};
use serde_json::{Map, Value};

/// The largest request accepted, in bytes (a ZeroMQ peer announcing more is dropped before it is
/// read).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The most uniforms or nodes one request may set.
pub const MAX_ENTRIES: usize = 256;

/// A uniform's new value: a number, or 2 to 4 numbers (vec2 to vec4).
#[derive(Debug, Clone, PartialEq)]
pub struct UniformValue(pub Vec<f64>);

/// A camera change; each field left out keeps its current value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CameraChange {
    /// Where the eye is.
    pub eye: Option<Vec3>,
    /// What it looks at.
    pub target: Option<Vec3>,
    /// Which way is up.
    pub up: Option<Vec3>,
    /// Vertical field of view, degrees (0 to 180, exclusive).
    pub fov_deg: Option<f32>,
}

/// A node's new local transform; each part left out keeps its current value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeChange {
    /// Translation.
    pub translation: Option<Vec3>,
    /// Rotation, a unit quaternion `[x, y, z, w]` (normalised on the way in).
    pub rotation: Option<Quat>,
    /// Scale.
    pub scale: Option<Vec3>,
}

/// What a request changes in the scene.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Uniforms by name, in the request's order.
    pub uniforms: Vec<(String, UniformValue)>,
    /// The camera.
    pub camera: Option<CameraChange>,
    /// Nodes by name, in the request's order.
    pub nodes: Vec<(String, NodeChange)>,
}

impl Settings {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.uniforms.is_empty() && self.camera.is_none() && self.nodes.is_empty()
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// The client's id for it (non-zero: 0 tags frames that answer no request).
    pub id: u64,
    /// The frame index to render.
    pub frame: Option<u64>,
    /// What it changes.
    pub settings: Settings,
}

/// A request that cannot be taken: the id, when one could be read, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The request's id, if it had a valid one.
    pub id: Option<u64>,
    /// One line.
    pub error: String,
}

fn vec3(what: &str, value: &Value) -> Result<Vec3, String> {
    let numbers = numbers(what, value)?;
    match numbers[..] {
        [x, y, z] => Ok(Vec3::new(x as f32, y as f32, z as f32)),
        _ => Err(format!("{what} must be 3 numbers, got {}", numbers.len())),
    }
}

fn numbers(what: &str, value: &Value) -> Result<Vec<f64>, String> {
    let finite = |n: Option<f64>| n.filter(|n| n.is_finite());
    match value {
        Value::Number(n) => Ok(vec![
            finite(n.as_f64()).ok_or_else(|| format!("{what} is not a finite number"))?,
        ]),
        Value::Array(items) if (1..=16).contains(&items.len()) => items
            .iter()
            .map(|item| {
                finite(item.as_f64()).ok_or_else(|| format!("{what} must hold numbers only"))
            })
            .collect(),
        _ => Err(format!("{what} must be a number or an array of numbers")),
    }
}

fn object<'a>(what: &str, value: &'a Value) -> Result<&'a Map<String, Value>, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{what} must be an object"))?;
    if object.len() > MAX_ENTRIES {
        return Err(format!(
            "{what} has {} entries (at most {MAX_ENTRIES})",
            object.len()
        ));
    }
    Ok(object)
}

fn only_keys(what: &str, object: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "{what}: unknown key {key:?} (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// Reads one request. Everything is checked before anything is returned: a request is taken
/// whole or refused whole.
pub fn parse(bytes: &[u8]) -> Result<Request, Refused> {
    let refuse = |id, error: String| Refused { id, error };
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(refuse(
            None,
            format!(
                "a request of {} bytes (at most {MAX_REQUEST_BYTES})",
                bytes.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| refuse(None, format!("not a JSON object: {e}")))?;
    let Value::Object(request) = &value else {
        return Err(refuse(None, "a request must be a JSON object".into()));
    };
    let id = match request.get("id") {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|&id| id > 0)
            .ok_or_else(|| refuse(None, "id must be an integer from 1 to 2^64 - 1".into()))?,
        Some(_) => {
            return Err(refuse(
                None,
                "id must be an integer from 1 to 2^64 - 1".into(),
            ));
        }
        None => return Err(refuse(None, "a request needs an id".into())),
    };
    let fail = |error: String| refuse(Some(id), error);
    only_keys(
        "request",
        request,
        &["id", "frame", "uniforms", "camera", "nodes"],
    )
    .map_err(fail)?;
    let frame = match request.get("frame") {
        None => None,
        Some(frame) => Some(
            frame
                .as_u64()
                .ok_or_else(|| fail("frame must be an integer from 0".into()))?,
        ),
    };
    let mut settings = Settings::default();
    if let Some(uniforms) = request.get("uniforms") {
        for (name, value) in object("uniforms", uniforms).map_err(fail)? {
            let numbers = numbers(&format!("uniform {name}"), value).map_err(fail)?;
            if numbers.len() > 4 {
                return Err(fail(format!(
                    "uniform {name}: {} numbers (a uniform takes 1 to 4)",
                    numbers.len()
                )));
            }
            settings
                .uniforms
                .push((name.clone(), UniformValue(numbers)));
        }
    }
    if let Some(camera) = request.get("camera") {
        let camera = object("camera", camera).map_err(fail)?;
        only_keys("camera", camera, &["eye", "target", "up", "fov_deg"]).map_err(fail)?;
        let get = |key: &str| -> Result<Option<Vec3>, Refused> {
            camera
                .get(key)
                .map(|v| vec3(&format!("camera.{key}"), v))
                .transpose()
                .map_err(fail)
        };
        let fov_deg = match camera.get("fov_deg") {
            None => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|f| *f > 0.0 && *f < 180.0)
                    .ok_or_else(|| {
                        fail("camera.fov_deg must be a number between 0 and 180".into())
                    })? as f32,
            ),
        };
        let change = CameraChange {
            eye: get("eye")?,
            target: get("target")?,
            up: get("up")?,
            fov_deg,
        };
        if change.up.is_some_and(|up| up.length_squared() == 0.0) {
            return Err(fail("camera.up must not be zero".into()));
        }
        settings.camera = Some(change);
    }
    if let Some(nodes) = request.get("nodes") {
        for (name, node) in object("nodes", nodes).map_err(fail)? {
            let what = format!("node {name:?}");
            let node = object(&what, node).map_err(fail)?;
            only_keys(&what, node, &["translation", "rotation", "scale"]).map_err(fail)?;
            let rotation = match node.get("rotation") {
                None => None,
                Some(v) => {
                    let q = numbers(&format!("{what}.rotation"), v).map_err(fail)?;
                    let [x, y, z, w] = q[..] else {
                        return Err(fail(format!(
                            "{what}.rotation must be 4 numbers [x, y, z, w], got {}",
                            q.len()
                        )));
                    };
                    let q = Quat::from_xyzw(x as f32, y as f32, z as f32, w as f32);
                    if q.length_squared() < 1e-12 {
                        return Err(fail(format!("{what}.rotation must not be zero")));
                    }
                    Some(q.normalize())
                }
            };
            let vector = |key: &str| -> Result<Option<Vec3>, Refused> {
                node.get(key)
                    .map(|v| vec3(&format!("{what}.{key}"), v))
                    .transpose()
                    .map_err(fail)
            };
            settings.nodes.push((
                name.clone(),
                NodeChange {
                    translation: vector("translation")?,
                    rotation,
                    scale: vector("scale")?,
                },
            ));
        }
    }
    Ok(Request {
        id,
        frame,
        settings,
    })
}

/// The answer to a request that was rendered as frame `frame`.
pub fn answer_ok(id: u64, frame: u64) -> String {
    serde_json::json!({"id": id, "ok": true, "frame": frame}).to_string()
}

/// The answer to a request that was refused (`id` null when it had none).
pub fn answer_refused(refused: &Refused) -> String {
    serde_json::json!({"id": refused.id, "ok": false, "error": refused.error}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_request_parses() {
        let request = parse(
            br#"{"id": 7, "frame": 120, "uniforms": {"u_color": [1, 0, 0], "u_speed": 2.0},
                "camera": {"eye": [0, 1, 4], "target": [0, 0, 0], "up": [0, 1, 0], "fov_deg": 45},
                "nodes": {"Wheel": {"translation": [0, 0, 1], "rotation": [0, 0, 0, 2]}}}"#,
        )
        .unwrap();
        assert_eq!(request.id, 7);
        assert_eq!(request.frame, Some(120));
        assert_eq!(
            request.settings.uniforms,
            vec![
                ("u_color".into(), UniformValue(vec![1.0, 0.0, 0.0])),
                ("u_speed".into(), UniformValue(vec![2.0]))
            ]
        );
        let camera = request.settings.camera.unwrap();
        assert_eq!(camera.eye, Some(Vec3::new(0.0, 1.0, 4.0)));
        assert_eq!(camera.fov_deg, Some(45.0));
        let (name, node) = &request.settings.nodes[0];
        assert_eq!(name, "Wheel");
        assert_eq!(node.rotation, Some(Quat::IDENTITY));
        assert_eq!(node.scale, None);
    }

    #[test]
    fn bad_requests_are_refused_with_their_id_when_it_is_known() {
        for (text, id, needle) in [
            (&b"{"[..], None, "not a JSON object"),
            (b"[1]", None, "must be a JSON object"),
            (b"{}", None, "needs an id"),
            (br#"{"id": 0}"#, None, "id must be"),
            (br#"{"id": "x"}"#, None, "id must be"),
            (
                br#"{"id": 3, "colour": 1}"#,
                Some(3),
                "unknown key \"colour\"",
            ),
            (br#"{"id": 3, "frame": -1}"#, Some(3), "frame must be"),
            (
                br#"{"id": 3, "uniforms": {"a": "red"}}"#,
                Some(3),
                "uniform a must be",
            ),
            (
                br#"{"id": 3, "uniforms": {"a": [1,2,3,4,5]}}"#,
                Some(3),
                "1 to 4",
            ),
            (
                br#"{"id": 3, "camera": {"eye": [1, 2]}}"#,
                Some(3),
                "camera.eye must be 3",
            ),
            (
                br#"{"id": 3, "camera": {"fov_deg": 180}}"#,
                Some(3),
                "fov_deg",
            ),
            (
                br#"{"id": 3, "nodes": {"W": {"rotation": [0,0,0]}}}"#,
                Some(3),
                "4 numbers",
            ),
            (
                br#"{"id": 3, "nodes": {"W": {"spin": 1}}}"#,
                Some(3),
                "unknown key",
            ),
        ] {
            let refused = parse(text).unwrap_err();
            assert_eq!(refused.id, id, "{}", String::from_utf8_lossy(text));
            assert!(refused.error.contains(needle), "{}", refused.error);
        }
        let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(parse(&huge).unwrap_err().error.contains("at most"));
    }

    #[test]
    fn answers_are_one_json_object() {
        assert_eq!(answer_ok(7, 120), r#"{"frame":120,"id":7,"ok":true}"#);
        let refused = answer_refused(&Refused {
            id: None,
            error: "bad".into(),
        });
        assert_eq!(refused, r#"{"error":"bad","id":null,"ok":false}"#);
    }
}
