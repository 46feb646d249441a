//! Shader scenes: a `.frag` / `.glsl` file in Shadertoy's conventions, drawn as one full-screen
//! pass.
//!
//! The file defines `void mainImage(out vec4 fragColor, in vec2 fragCoord)`. We wrap it: a
//! prologue declares the uniforms (`iResolution`, `iTime`, `iTimeDelta`, `iFrame`, and `iMouse`,
//! always zero), then a `#line 1` directive so the driver's log counts lines as the user's file
//! does, then the file, then an epilogue whose `main` calls `mainImage` with `gl_FragCoord.xy`
//! (origin bottom-left, as on Shadertoy). Time is the frame index over the frame rate (60 when
//! unpaced), never the clock, so frame N is the same image on every run.

use std::path::Path;

use glam::Vec3;

use super::{Scene, SceneError, SceneOptions};
use crate::control::Settings;
use crate::gl::context::HeadlessContext;
use crate::gl::objects::{
    ActiveUniform, Clear, FullscreenPass, RenderTarget, Uniform, UniformKind,
};

/// The frame rate iTime assumes when the stream is not paced.
const DEFAULT_FPS: f64 = 60.0;

/// A user's fragment shader and the full-screen pass that runs it.
pub struct ShaderScene {
    pass: FullscreenPass,
    seconds_per_frame: f64,
    uniforms: ShadertoyUniforms,
    /// The file's name, for errors.
    name: String,
    /// The uniforms the user's file declares (and uses), settable by control requests.
    user: Vec<ActiveUniform>,
    /// Values requests set, by index into `user`; set again before every frame.
    values: Vec<(usize, Vec<f32>)>,
}

/// The prologue's uniforms, which requests cannot set: time and size are the stream's.
const PROLOGUE_UNIFORMS: [&str; 5] = ["iResolution", "iTime", "iTimeDelta", "iFrame", "iMouse"];

/// The prologue's uniforms, looked up once (a lookup by name allocates in glow). Each is
/// optional: a user's file need not use `iTime` or `iFrame`, and the compiler drops what it does
/// not use, so a missing one sets nothing rather than failing the scene.
struct ShadertoyUniforms {
    resolution: Uniform,
    time: Uniform,
    time_delta: Uniform,
    frame: Uniform,
}

/// The fragment source the driver compiles: prologue, `#line 1`, the user's code, epilogue.
fn wrap(user_source: &str) -> String {
    // Program::new puts its own `#line 1` after the #version header; ours comes after the
    // prologue, so it is the one that counts for every line of the user's file.
    format!(
        "{}#line 1\n{}\n{}",
        include_str!("../../shaders/shadertoy_prologue.frag"),
        user_source,
        include_str!("../../shaders/shadertoy_epilogue.frag"),
    )
}

impl ShaderScene {
    /// Reads and compiles `path`; compile errors carry the file name and its line numbers.
    pub fn new(
        context: &HeadlessContext,
        options: &SceneOptions,
        path: &Path,
    ) -> Result<Self, SceneError> {
        let user_source = std::fs::read_to_string(path).map_err(|source| SceneError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let pass = FullscreenPass::new(
            context.gl(),
            &path.display().to_string(),
            context.glsl_header(),
            &wrap(&user_source),
        )?;
        let program = pass.program();
        let fps = options
            .frame_rate
            .filter(|fps| fps.is_finite() && *fps > 0.0)
            .unwrap_or(DEFAULT_FPS);
        let uniforms = ShadertoyUniforms {
            resolution: program.optional_uniform("iResolution"),
            time: program.optional_uniform("iTime"),
            time_delta: program.optional_uniform("iTimeDelta"),
            frame: program.optional_uniform("iFrame"),
        };
        let user = program
            .active_uniforms()
            .into_iter()
            .filter(|u| !PROLOGUE_UNIFORMS.contains(&u.name.as_str()))
            .collect();
        Ok(Self {
            uniforms,
            pass,
            seconds_per_frame: 1.0 / fps,
            name: path.display().to_string(),
            user,
            values: Vec::new(),
        })
    }
}

impl ShaderScene {
    /// The value `numbers` gives uniform `name`, checked against what the file declares.
    fn checked(&self, name: &str, numbers: &[f64]) -> Result<(usize, Vec<f32>), String> {
        let Some(index) = self.user.iter().position(|u| u.name == name) else {
            let declared: Vec<&str> = self.user.iter().map(|u| u.name.as_str()).collect();
            return Err(format!(
                "uniform {name}: {} declares no such uniform, or does not use it (it has: {})",
                self.name,
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ));
        };
        let kind = self.user[index].kind;
        let wrong = || {
            format!(
                "uniform {name} is a {}, not {} number{}",
                kind.glsl(),
                numbers.len(),
                if numbers.len() == 1 { "" } else { "s" }
            )
        };
        match kind {
            UniformKind::Float(n) if n == numbers.len() => {
                Ok((index, numbers.iter().map(|&x| x as f32).collect()))
            }
            UniformKind::Int
                if numbers.len() == 1
                    && numbers[0].fract() == 0.0
                    && (i32::MIN as f64..=i32::MAX as f64).contains(&numbers[0]) =>
            {
                Ok((index, vec![numbers[0] as f32]))
            }
            UniformKind::Int if numbers.len() == 1 => {
                Err(format!("uniform {name} is an int, not {}", numbers[0]))
            }
            _ => Err(wrong()),
        }
    }
}

impl Scene for ShaderScene {
    fn apply(&mut self, settings: &Settings) -> Result<(), String> {
        super::refuse_unsupported("shader", settings, true, false, false)?;
        let checked = settings
            .uniforms
            .iter()
            .map(|(name, value)| self.checked(name, &value.0))
            .collect::<Result<Vec<_>, String>>()?;
        for (index, value) in checked {
            match self.values.iter_mut().find(|(i, _)| *i == index) {
                Some(slot) => slot.1 = value,
                None => self.values.push((index, value)),
            }
        }
        Ok(())
    }

    fn render(&mut self, frame_index: u64, target: &RenderTarget) {
        target.begin(Clear::Nothing);
        let program = self.pass.program();
        program.bind();
        let u = &self.uniforms;
        program.set_vec3(
            &u.resolution,
            Vec3::new(target.width_px() as f32, target.height_px() as f32, 1.0),
        );
        // Computed in f64 and rounded once, so late frames keep their sub-frame precision as
        // long as f32 can hold the result.
        program.set_f32(
            &u.time,
            (frame_index as f64 * self.seconds_per_frame) as f32,
        );
        program.set_f32(&u.time_delta, self.seconds_per_frame as f32);
        // GLSL's int is 32-bit; past 2^31 frames the count wraps rather than going negative.
        program.set_i32(&u.frame, (frame_index % (1 << 31)) as i32);
        for (index, value) in &self.values {
            let uniform = &self.user[*index];
            match uniform.kind {
                UniformKind::Int => program.set_i32(&uniform.location, value[0] as i32),
                _ => program.set_floats(&uniform.location, value),
            }
        }
        self.pass.draw();
    }
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn user_code_starts_right_after_a_line_directive() {
        let wrapped = wrap("void mainImage(out vec4 c, in vec2 p) { c = vec4(1.0); }");
        let (before, after) = wrapped.split_once("#line 1\n").unwrap();
        assert!(before.contains("uniform float iTime;"));
        assert!(after.starts_with("void mainImage"));
        assert!(after.contains("mainImage(color, gl_FragCoord.xy)"));
    }
}
