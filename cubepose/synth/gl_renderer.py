"""OpenGL rendering of a sampled scene with moderngl on a headless EGL context.

Mesa's llvmpipe renders on the CPU where no GPU driver exists. Scenes are given in Unity's
camera frame (x right, y up, z forward); OpenGL's eye frame looks down -z, so every model
matrix is premultiplied by diag(1, 1, -1), and the projection is built from the image's
intrinsics, so a point lands on u = cx + fx x/z, v = cy - fy y/z (any aspect, fx != fy and an
off-centre principal point included).
"""

from __future__ import annotations

import numpy as np

from cubepose.errors import CubeposeError
from cubepose.geometry.rotations import quaternion_to_matrix
from cubepose.synth.scene import NEAR_PLANE, Box, Scene
from cubepose.synth.textures import cube_atlas

FLIP_Z = np.diag([1.0, 1.0, -1.0])
NEAR, FAR = NEAR_PLANE, 100.0
SAMPLES = 4  # multisample anti-aliasing
FLOOR_SIZE = 40.0  # metres: a floor's edge, in 1 m tiles
# Debian/Ubuntu packages of what the EGL context loads: libEGL and libGL (glvnd), Mesa's EGL vendor and
# drivers (llvmpipe). glcontext finds libGL.so.1 and libEGL.so.1 by soname; the Dockerfiles install these.
SYSTEM_PACKAGES = ("libegl1", "libegl-mesa0", "libgl1", "libgl1-mesa-dri")
SYSTEM_LIBRARIES = (
    f"libEGL, libGL and Mesa's OpenGL drivers (Debian/Ubuntu: apt-get install {' '.join(SYSTEM_PACKAGES)})"
)

VERTEX_SHADER = """
#version 330
uniform mat4 projection;
uniform mat4 model_view;
uniform mat3 normal_matrix;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_position;
out vec3 v_normal;
out vec2 v_uv;
void main() {
    vec4 position = model_view * vec4(in_position, 1.0);
    v_position = position.xyz;
    v_normal = normal_matrix * in_normal;
    v_uv = in_uv;
    gl_Position = projection * position;
}
"""

FRAGMENT_SHADER = """
#version 330
uniform sampler2D albedo;
uniform vec3 tint;
uniform vec2 uv_scale;
uniform vec3 light_direction;
uniform vec3 light_colour;
uniform vec3 ambient;
uniform vec3 fill_direction;
uniform vec3 fill_colour;  // black: no second light
uniform float shadow_strength;
uniform int mode;  // 0: lit, 1: unlit (background), 2: mask, 3: shadow (a solid flattened onto the table)
in vec3 v_position;
in vec3 v_normal;
in vec2 v_uv;
out vec4 colour;
void main() {
    if (mode == 2) { colour = vec4(1.0); return; }
    if (mode == 3) {  // the faces towards the light cover a convex solid's shadow exactly once
        if (dot(normalize(v_normal), light_direction) <= 0.0) discard;
        colour = vec4(0.0, 0.0, 0.0, shadow_strength);
        return;
    }
    vec3 base = texture(albedo, v_uv * uv_scale).rgb * tint;
    if (mode == 1) { colour = vec4(base, 1.0); return; }
    vec3 normal = normalize(v_normal);
    vec3 view = normalize(-v_position);
    if (dot(normal, view) < 0.0) normal = -normal;  // two-sided planes
    float diffuse = max(dot(normal, light_direction), 0.0);
    float specular = pow(max(dot(reflect(-light_direction, normal), view), 0.0), 24.0) * 0.25;
    float fill = max(dot(normal, fill_direction), 0.0);
    colour = vec4(base * (ambient + light_colour * diffuse + fill_colour * fill) + light_colour * specular, 1.0);
}
"""


SENSOR_VERTEX_SHADER = """
#version 330
in vec2 in_corner;
void main() { gl_Position = vec4(in_corner, 0.0, 1.0); }
"""

# Optics then sensor: Gaussian blur (5x5 taps) of the resolved frame, then Gaussian pixel noise from a
# per-pixel integer hash of (x, y, seed) through Box-Muller. On the GPU (or llvmpipe's JIT) this is
# nearly free, where numpy and PIL took 3.8 ms per 224 px image.
SENSOR_FRAGMENT_SHADER = """
#version 330
uniform sampler2D frame;
uniform float sigma;
uniform float noise;
uniform uint seed;
uniform ivec2 last;  // the image's last pixel: images smaller than the buffers use its lower-left corner
out vec4 colour;
uint hash(uint x) {
    x ^= x >> 16u; x *= 0x7feb352du; x ^= x >> 15u; x *= 0x846ca68bu; x ^= x >> 16u;
    return x;
}
float unit(uint x) { return (float(hash(x) >> 8u) + 0.5) / 16777216.0; }
void main() {
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    vec3 sum = vec3(0.0);
    float total = 0.0;
    int reach = sigma > 0.05 ? 2 : 0;
    for (int dy = -reach; dy <= reach; dy++) {
        for (int dx = -reach; dx <= reach; dx++) {
            float weight = reach == 0 ? 1.0 : exp(-float(dx * dx + dy * dy) / (2.0 * sigma * sigma));
            sum += weight * texelFetch(frame, clamp(pixel + ivec2(dx, dy), ivec2(0), last), 0).rgb;
            total += weight;
        }
    }
    uint key = hash(uint(pixel.x) + 4096u * uint(pixel.y)) ^ seed;
    vec3 gaussian;
    for (int c = 0; c < 3; c++) {
        float u1 = unit(key + uint(2 * c)), u2 = unit(key + uint(2 * c + 1) + 0x9e3779b9u);
        gaussian[c] = sqrt(-2.0 * log(u1)) * cos(6.2831853 * u2);
    }
    colour = vec4(sum / total + gaussian * noise / 255.0, 1.0);
}
"""


def _box_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A unit box: 24 vertices (position, normal, uv into the 6-face atlas) and 36 indices."""
    vertices, indices = [], []
    for face, (axis, sign) in enumerate((a, s) for a in range(3) for s in (1, -1)):
        normal = np.zeros(3)
        normal[axis] = sign
        u_axis, v_axis = [a for a in range(3) if a != axis]
        for cu, cv in ((0, 0), (1, 0), (1, 1), (0, 1)):
            position = normal * 0.5
            position[u_axis], position[v_axis] = cu - 0.5, cv - 0.5
            vertices.append([*position, *normal, (face + cu) / 6, cv])
        base = 4 * face
        indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return np.array(vertices, dtype="f4"), np.array(indices, dtype="i4")


def _cylinder_mesh(segments: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A cylinder of diameter 1 and height 1 along y, centred: smooth sides and two flat caps."""
    vertices, indices = [], []
    angles = np.linspace(0, 2 * np.pi, segments + 1)
    for i, angle in enumerate(angles):
        x, z = 0.5 * np.cos(angle), 0.5 * np.sin(angle)
        vertices += [[x, -0.5, z, 2 * x, 0, 2 * z, i / segments, 0], [x, 0.5, z, 2 * x, 0, 2 * z, i / segments, 1]]
    for i in range(segments):
        a, b = 2 * i, 2 * i + 2
        indices += [a, b, a + 1, b, b + 1, a + 1]
    for y in (-0.5, 0.5):
        centre = len(vertices)
        vertices.append([0, y, 0, 0, 2 * y, 0, 0.5, 0.5])
        for angle in angles:
            vertices.append([0.5 * np.cos(angle), y, 0.5 * np.sin(angle), 0, 2 * y, 0, 0.5, 0.5])
        indices += [v for i in range(segments) for v in (centre, centre + 1 + i, centre + 2 + i)]
    return np.array(vertices, dtype="f4"), np.array(indices, dtype="i4")


def shadow_matrix(normal: np.ndarray, offset: float, towards_light: np.ndarray) -> np.ndarray:
    """4x4 map of points onto the plane ``normal . x = offset`` along ``towards_light``: a planar shadow."""
    along = float(normal @ towards_light)
    matrix = np.eye(4)
    matrix[:3, :3] -= np.outer(towards_light, normal) / along
    matrix[:3, 3] = towards_light * offset / along
    return matrix


SHADOW_LIFT = 0.001  # metres above the table: shadows drawn there never fight the table for depth
SHADOW_STRENGTH = 0.5


def _quad(z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A unit square in the x-z plane (normal +y), uv 0-1; with ``z`` set, a screen quad at that depth."""
    corners = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    vertices = [[x, 0.0, y, 0, 1, 0, x + 0.5, y + 0.5] for x, y in corners]
    if z:
        vertices = [[2 * x, 2 * y, z, 0, 0, 1, x + 0.5, y + 0.5] for x, y in corners]
    return np.array(vertices, dtype="f4"), np.array([0, 1, 2, 0, 2, 3], dtype="i4")


def projection_matrix(entries: np.ndarray) -> np.ndarray:
    """OpenGL's perspective projection of Unity's entries (m00, m11, m02, m12): geometry.projection_from_intrinsics."""
    m00, m11, m02, m12 = (float(v) for v in entries)
    return np.array(
        [
            [m00, 0, m02, 0],
            [0, m11, m12, 0],
            [0, 0, (FAR + NEAR) / (NEAR - FAR), 2 * FAR * NEAR / (NEAR - FAR)],
            [0, 0, -1, 0],
        ]
    )


def _gl_matrix(matrix: np.ndarray) -> bytes:
    return np.ascontiguousarray(matrix.T, dtype="f4").tobytes()  # OpenGL is column-major


class GLRenderer:
    """Renders scenes up to one image size with one face atlas; create one per process (a GL context is not fork-safe).

    A scene whose camera is smaller than ``width`` x ``height`` is drawn into the buffers' lower-left corner
    (randomised image sizes share one renderer).

    ``faces`` is the object's texture atlas (textures.cube_atlas; default: the die faces).
    """

    def __init__(
        self,
        width: int,
        height: int,
        backgrounds: list[np.ndarray] | None = None,
        faces: np.ndarray | None = None,
    ) -> None:
        try:
            import moderngl

            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as err:  # moderngl/glcontext raise plain Exceptions for missing libraries
            raise CubeposeError(
                f"cannot create a headless OpenGL context ({err}); cubepose generate needs {SYSTEM_LIBRARIES}"
            ) from err
        import moderngl

        self.size = (width, height)
        self.program = self.ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        self.box = self._mesh(*_box_mesh())
        self.cylinder = self._mesh(*_cylinder_mesh())
        self.plane = self._mesh(*_quad())
        self.screen = self._mesh(*_quad(z=0.9999))
        self.msaa = self.ctx.framebuffer(
            self.ctx.renderbuffer(self.size, 3, samples=SAMPLES),
            self.ctx.depth_renderbuffer(self.size, samples=SAMPLES),
        )
        self.frame = self.ctx.texture(self.size, 3)
        self.resolved = self.ctx.framebuffer(self.frame, self.ctx.depth_renderbuffer(self.size))
        self.output = self.ctx.framebuffer(self.ctx.renderbuffer(self.size, 3))
        self.sensor = self.ctx.program(vertex_shader=SENSOR_VERTEX_SHADER, fragment_shader=SENSOR_FRAGMENT_SHADER)
        corners = np.array([-1, -1, 1, -1, -1, 1, 1, 1], dtype="f4")
        self.sensor_quad = self.ctx.vertex_array(self.sensor, [(self.ctx.buffer(corners.tobytes()), "2f", "in_corner")])
        self.atlas = self._texture(cube_atlas() if faces is None else faces)
        self.white = self._texture(np.full((1, 1, 3), 255, dtype=np.uint8))
        self.backgrounds = [self._texture(image) for image in backgrounds or []]
        self.ctx.enable(moderngl.DEPTH_TEST)

    def _mesh(self, vertices: np.ndarray, indices: np.ndarray):
        buffer, index_buffer = self.ctx.buffer(vertices.tobytes()), self.ctx.buffer(indices.tobytes())
        layout = [(buffer, "3f 3f 2f", "in_position", "in_normal", "in_uv")]
        return self.ctx.vertex_array(self.program, layout, index_buffer=index_buffer)

    def _texture(self, image: np.ndarray, repeat: bool = False):
        image = np.ascontiguousarray(image[::-1], dtype=np.uint8)  # OpenGL's rows start at the bottom
        texture = self.ctx.texture((image.shape[1], image.shape[0]), 3, image.tobytes(), alignment=1)
        texture.repeat_x = texture.repeat_y = repeat
        return texture

    def _set(self, name: str, value) -> None:
        if name in self.program:
            uniform = self.program[name]
            if isinstance(value, bytes):
                uniform.write(value)
            else:
                uniform.value = value

    def _draw(self, vao, texture, model: np.ndarray, normal: np.ndarray, tint=(1, 1, 1), uv_scale=(1, 1), mode=0):
        texture.use(0)
        self._set("model_view", _gl_matrix(model))
        self._set("normal_matrix", np.ascontiguousarray(normal.T, dtype="f4").tobytes())
        self._set("tint", tuple(float(v) for v in tint))
        self._set("uv_scale", tuple(float(v) for v in uv_scale))
        self._set("mode", mode)
        vao.render()

    def _draw_box(self, box: Box, texture, mode: int = 0, flatten: np.ndarray | None = None) -> None:
        """A solid (box or cylinder); ``flatten``: first map it through this 4x4 (a planar shadow)."""
        rotation = FLIP_Z @ quaternion_to_matrix(box.quaternion)
        model = np.eye(4)
        model[:3, :3] = rotation * box.size
        model[:3, 3] = FLIP_Z @ box.translation
        mesh = self.cylinder if box.shape == "cylinder" else self.box
        self._draw(mesh, texture, model if flatten is None else flatten @ model, rotation, tint=box.colour, mode=mode)

    def _draw_plane(self, texture, centre: np.ndarray, up: np.ndarray, size: np.ndarray, tiles: float) -> None:
        """A textured rectangle through ``centre`` with normal ``up``, ``size`` (along, across) metres."""
        basis = self._table_basis(up)
        model = np.eye(4)
        model[:3, :3] = FLIP_Z @ basis * [size[0], 1, size[1]]
        model[:3, 3] = FLIP_Z @ centre
        self._draw(self.plane, texture, model, FLIP_Z @ basis, uv_scale=(tiles,) * 2)

    def _draw_shadows(self, scene: Scene, solids: list[Box]) -> None:
        """The first light's shadows of the solids above the table, flattened onto it and blended darker."""
        import moderngl

        normal = FLIP_Z @ scene.up
        offset = float(normal @ (FLIP_Z @ scene.table_centre)) + SHADOW_LIFT
        flatten = shadow_matrix(normal, offset, FLIP_Z @ scene.light_direction)
        self._set("shadow_strength", SHADOW_STRENGTH)
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        for solid in solids:
            if (solid.translation - scene.table_centre) @ scene.up > 0:
                self._draw_box(solid, self.white, mode=3, flatten=flatten)
        self.ctx.disable(moderngl.BLEND)

    def render(self, scene: Scene, mask: bool = False):
        """RGB uint8 (H, W, 3) of ``scene`` with its blur and noise; with ``mask``, also the (H, W) bool mask of
        the object's instances."""
        import moderngl

        width, height = self.size if scene.camera is None else scene.camera.size
        if width > self.size[0] or height > self.size[1]:
            raise ValueError(f"a {width}x{height} image does not fit this renderer's {self.size[0]}x{self.size[1]}")
        viewport = (0, 0, width, height)
        for buffer in (self.msaa, self.resolved, self.output):
            buffer.viewport = viewport
        self.msaa.use()
        self.msaa.clear(0.0, 0.0, 0.0, 1.0)
        self._set("light_direction", tuple(float(v) for v in FLIP_Z @ scene.light_direction))
        self._set("light_colour", tuple(float(v) for v in scene.light_colour))
        self._set("ambient", tuple(float(v) for v in scene.ambient))
        fill = scene.fill_light_colour is not None
        self._set("fill_direction", tuple(float(v) for v in FLIP_Z @ scene.fill_light_direction) if fill else (0, 0, 1))
        self._set("fill_colour", tuple(float(v) for v in scene.fill_light_colour) if fill else (0.0, 0.0, 0.0))

        own_background = scene.background_index < 0
        background = (
            self._texture(scene.background_texture) if own_background else self.backgrounds[scene.background_index]
        )
        self.ctx.depth_mask = False  # the background is a screen quad behind everything
        self._set("projection", _gl_matrix(np.eye(4)))
        self._draw(self.screen, background, np.eye(4), np.eye(3), mode=1)
        self._set("projection", _gl_matrix(projection_matrix(scene.projection(width, height))))
        self.ctx.depth_mask = True

        table = self._texture(scene.table_texture, repeat=True)
        self._draw_plane(table, scene.table_centre, scene.up, np.broadcast_to(scene.table_size, 2), scene.table_tiles)
        if scene.floor_centre is not None:
            floor = self._texture(scene.floor_texture, repeat=True)
            self._draw_plane(floor, scene.floor_centre, scene.up, np.array([FLOOR_SIZE] * 2), FLOOR_SIZE)
            floor.release()
        for instance in scene.objects:
            self._draw_box(instance, self.atlas)
        for box in [*scene.distractors, *scene.fixtures]:
            self._draw_box(box, self.white)
        if scene.shadows:
            self._draw_shadows(scene, [*scene.objects, *scene.distractors, *scene.fixtures])
        if own_background:
            background.release()
        table.release()

        self.ctx.copy_framebuffer(self.resolved, self.msaa)
        self.output.use()
        self.frame.use(0)
        self.sensor["sigma"].value = float(scene.blur)
        self.sensor["noise"].value = float(scene.noise)
        self.sensor["seed"].value = int(scene.noise_seed)
        self.sensor["last"].value = (width - 1, height - 1)
        self.sensor_quad.render(moderngl.TRIANGLE_STRIP)
        image = np.frombuffer(self.output.read(viewport, components=3, alignment=1), np.uint8).reshape(height, width, 3)
        image = image[::-1].copy()
        if not mask:
            return image
        self.resolved.use()
        self.resolved.clear(0.0, 0.0, 0.0, 1.0)
        for instance in scene.objects:
            self._draw_box(instance, self.white, mode=2)
        silhouette = np.frombuffer(self.resolved.read(viewport, components=1, alignment=1), np.uint8).reshape(
            height, width
        )
        return image, silhouette[::-1] > 127

    @staticmethod
    def _table_basis(up: np.ndarray) -> np.ndarray:
        """Columns: two table directions and the table normal ``up`` (in the middle, as the quad's +y)."""
        along = np.array([1.0, 0.0, 0.0]) - up * up[0]
        along /= np.linalg.norm(along)
        return np.column_stack([along, up, np.cross(along, up)])

    def release(self) -> None:
        self.ctx.release()
