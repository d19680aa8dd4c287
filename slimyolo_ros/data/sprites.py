"""Object sprites of the synthetic scenes: one top-down drawing per VisDrone class, as a BGRA patch.

Every class has its own shape, colour and size (relative to a car's length, the scene's scale unit) so a
tiny model can learn them: pedestrian = dark body with a light head, people = a pair of colourful figures,
bicycle = thin frame between two wheels, car = rounded box with windows, van = bigger light box, truck = cab +
long cargo box, tricycle = small open box with a front wheel, awning-tricycle = the same with a striped
awning, bus = long yellow/red box with roof units, motor = short dark body with a helmeted rider.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SS = 4  # sprites are drawn SS× larger, then area-downsampled: antialiased edges without LINE_AA guesswork

# Per class (index = VisDrone category - 1): length relative to the scene's car length, and width relative
# to its own length.
CLASS_LENGTH = np.array([0.36, 0.62, 0.55, 1.0, 1.3, 2.0, 0.68, 0.72, 2.6, 0.52])
CLASS_WIDTH = np.array([1.0, 0.55, 0.24, 0.48, 0.48, 0.32, 0.6, 0.6, 0.3, 0.36])

CAR_COLOURS = [(235, 235, 235), (190, 192, 195), (35, 35, 40), (40, 40, 170), (150, 70, 30),
               (110, 110, 115), (60, 90, 60), (200, 200, 210)]  # BGR


class Sprite:
    """Draws one object in its own frame (x along its length, facing +x; y across), in final pixels."""

    def __init__(self, length: float, width: float):
        self.length, self.width = length, width
        m = 2.0
        self.w = int(math.ceil(length + 2 * m)) * SS
        self.h = int(math.ceil(width + 2 * m)) * SS
        self.cx, self.cy = self.w / 2, self.h / 2
        self.bgr = np.zeros((self.h, self.w, 3), np.uint8)
        self.alpha = np.zeros((self.h, self.w), np.uint8)

    def _p(self, x: float, y: float) -> tuple[int, int]:
        return int(round(self.cx + x * SS)), int(round(self.cy + y * SS))

    def rect(self, x: float, y: float, lx: float, ly: float, colour, radius: float = 0.0) -> None:
        """Filled rectangle centred at (x, y) with size lx × ly, optionally with rounded corners."""
        r = min(radius, lx / 2, ly / 2)
        for img, c in ((self.bgr, colour), (self.alpha, 255)):
            if r * SS < 1:
                cv2.rectangle(img, self._p(x - lx / 2, y - ly / 2), self._p(x + lx / 2, y + ly / 2), c, -1)
                continue
            hx, hy = lx / 2, ly / 2
            cv2.rectangle(img, self._p(x - hx + r, y - hy), self._p(x + hx - r, y + hy), c, -1)
            cv2.rectangle(img, self._p(x - hx, y - hy + r), self._p(x + hx, y + hy - r), c, -1)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    cv2.circle(img, self._p(x + sx * (lx / 2 - r), y + sy * (ly / 2 - r)), int(r * SS), c, -1)

    def ellipse(self, x: float, y: float, rx: float, ry: float, colour) -> None:
        axes = (max(1, int(rx * SS)), max(1, int(ry * SS)))
        cv2.ellipse(self.bgr, self._p(x, y), axes, 0, 0, 360, colour, -1)
        cv2.ellipse(self.alpha, self._p(x, y), axes, 0, 0, 360, 255, -1)

    def line(self, x1: float, y1: float, x2: float, y2: float, colour, thickness: float) -> None:
        t = max(1, int(thickness * SS))
        cv2.line(self.bgr, self._p(x1, y1), self._p(x2, y2), colour, t)
        cv2.line(self.alpha, self._p(x1, y1), self._p(x2, y2), 255, t)

    def finish(self) -> np.ndarray:
        """BGRA float32 patch in final pixels, alpha in [0, 1]."""
        size = (self.w // SS, self.h // SS)
        bgr = cv2.resize(self.bgr, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        a = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        return np.dstack([bgr, a])


def jitter(rng: np.random.Generator, colour, amount: float = 12.0) -> tuple[int, ...]:
    """``colour`` with Gaussian noise of ``amount`` per channel, clipped to 0..255."""
    c = np.asarray(colour, np.float64) + rng.normal(0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _draw_person(s: Sprite, rng, x: float, y: float, r: float, body, head) -> None:
    s.ellipse(x, y, r * 0.75, r, body)  # shoulders, wider across
    s.ellipse(x, y, r * 0.5, r * 0.5, head)


def render_object(cls: int, length: float, rng: np.random.Generator) -> np.ndarray:
    """The BGRA patch of one object of class ``cls`` with its long axis horizontal."""
    w = length * CLASS_WIDTH[cls]
    s = Sprite(length, w)
    L, W = length, w
    if cls == 0:  # pedestrian: dark clothes, light head
        _draw_person(s, rng, 0, 0, W / 2, jitter(rng, (40, 35, 30), 10), jitter(rng, (170, 195, 225), 10))
    elif cls == 1:  # people: two colourful figures side by side, dark hair
        for x in (-L / 4, L / 4):
            body = jitter(rng, [(40, 40, 200), (200, 90, 30), (40, 170, 60)][rng.integers(3)], 20)
            _draw_person(s, rng, x, 0, min(W / 2, L / 4), body, jitter(rng, (25, 25, 30), 6))
    elif cls == 2:  # bicycle: thin bright frame, two dark wheels, handlebar
        frame = jitter(rng, (200, 200, 90), 20)
        s.line(-L * 0.35, 0, L * 0.35, 0, frame, max(W * 0.35, 0.8))
        for x in (-L * 0.36, L * 0.36):
            s.rect(x, 0, L * 0.26, W * 0.55, (25, 25, 25), radius=W * 0.2)
        s.line(L * 0.25, -W / 2, L * 0.25, W / 2, frame, max(W * 0.25, 0.6))
    elif cls == 3:  # car: rounded body, dark windscreen and rear window, lighter roof
        body = jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 10)
        s.rect(0, 0, L, W, body, radius=W * 0.3)
        s.rect(L * 0.17, 0, L * 0.14, W * 0.8, (30, 30, 35))
        s.rect(-L * 0.27, 0, L * 0.1, W * 0.76, (45, 45, 50))
        s.rect(-L * 0.05, 0, L * 0.3, W * 0.72, tuple(min(255, c + 18) for c in body))
    elif cls == 4:  # van: bigger light box, short bonnet, ribbed roof
        body = jitter(rng, [(230, 230, 230), (210, 200, 180), (200, 215, 225)][rng.integers(3)], 8)
        s.rect(0, 0, L, W, body, radius=W * 0.12)
        s.rect(L * 0.36, 0, L * 0.08, W * 0.84, (35, 35, 40))
        for x in (-0.25, -0.05, 0.15):
            s.line(L * x, -W * 0.38, L * x, W * 0.38, tuple(c - 40 for c in body), max(W * 0.06, 0.5))
    elif cls == 5:  # truck: coloured cab, dark gap, long ribbed cargo box
        cab = jitter(rng, [(40, 40, 190), (170, 80, 30), (40, 140, 40), (30, 120, 220)][rng.integers(4)], 15)
        cargo = jitter(rng, [(150, 150, 150), (70, 110, 140), (120, 90, 50)][rng.integers(3)], 12)
        s.rect(L * 0.4, 0, L * 0.18, W * 0.9, cab, radius=W * 0.1)
        s.rect(-L * 0.1, 0, L * 0.78, W, cargo)
        for i in range(5):
            x = -L * 0.45 + i * L * 0.17
            s.line(x, -W * 0.45, x, W * 0.45, tuple(c - 35 for c in cargo), max(W * 0.05, 0.5))
    elif cls in (6, 7):  # tricycle / awning-tricycle: front wheel + fork, box behind
        s.rect(L * 0.38, 0, L * 0.16, W * 0.22, (25, 25, 25))
        s.line(L * 0.15, 0, L * 0.38, 0, (60, 60, 60), max(W * 0.12, 0.6))
        if cls == 6:  # open metal box, rider's head in front of it
            box = jitter(rng, [(150, 120, 40), (60, 140, 60)][rng.integers(2)], 15)
            s.rect(-L * 0.15, 0, L * 0.62, W, box)
            s.rect(-L * 0.15, 0, L * 0.46, W * 0.7, tuple(c - 45 for c in box))
            s.ellipse(L * 0.2, 0, W * 0.17, W * 0.17, (20, 20, 25))
        else:  # striped awning across the box
            stripe = [(40, 40, 210), (190, 110, 30)][rng.integers(2)]
            s.rect(-L * 0.12, 0, L * 0.68, W, (235, 235, 235))
            n = 4
            for i in range(n):
                x = -L * 0.12 - L * 0.34 + (i + 0.5) * L * 0.68 / n
                s.rect(x, 0, L * 0.68 / (2 * n), W, jitter(rng, stripe, 8))
    elif cls == 8:  # bus: long yellow or red box, dark windscreen, pale roof units
        body = jitter(rng, [(20, 200, 235), (35, 35, 200)][rng.integers(2)], 10)
        s.rect(0, 0, L, W, body, radius=W * 0.1)
        s.rect(L * 0.46, 0, L * 0.05, W * 0.85, (30, 30, 35))
        for x in (-0.25, 0.1):
            s.rect(L * x, 0, L * 0.16, W * 0.55, (200, 200, 200))
    elif cls == 9:  # motor: short dark body, bright helmet on the rider
        s.rect(0, 0, L, W * 0.55, jitter(rng, (30, 30, 45), 8), radius=W * 0.2)
        s.ellipse(-L * 0.05, 0, W * 0.45, W * 0.5, jitter(rng, (60, 60, 70), 8))
        s.ellipse(-L * 0.05, 0, W * 0.3, W * 0.3, jitter(rng, [(30, 200, 230), (230, 230, 230),
                                                                  (40, 40, 220)][rng.integers(3)], 10))
    else:
        raise ValueError(f"class index {cls} out of range 0..9")
    return s.finish()


def rotate_patch(patch: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate a BGRA patch about its centre onto a canvas that holds all of it."""
    h, w = patch.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(math.ceil(w * cos + h * sin)) + 2, int(math.ceil(w * sin + h * cos)) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(patch, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
