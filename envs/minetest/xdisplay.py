"""`XDisplay`: keys, mouse and screen grabs on one X display, through XTest (python-xlib).

One connection, no process per key: a key press is one XTest request. The game is the only
window on its Xvfb screen (there is no window manager), so the screen is the game's frame.
"""

from __future__ import annotations

import numpy as np


def import_xlib():
    """python-xlib's modules, or ImportError naming the extra that installs it."""
    try:
        from Xlib import X, XK, display
        from Xlib.ext import xtest
    except ImportError as e:
        raise ImportError("the Minetest world needs python-xlib: pip install 'worldsim[minetest]'") from e
    return X, XK, display, xtest


class XDisplay:
    """An X connection that sends input with XTest and grabs the screen as ``(H, W, 3)`` uint8 RGB."""

    def __init__(self, name: str):
        X, XK, display, xtest = import_xlib()
        self._X, self._XK, self._xtest = X, XK, xtest
        self._d = display.Display(name)
        if not self._d.has_extension("XTEST"):
            raise RuntimeError(f"X display {name} has no XTEST extension")
        screen = self._d.screen()
        self._root = screen.root
        self.width, self.height = screen.width_in_pixels, screen.height_in_pixels

    def keycode(self, keysym_name: str) -> int:
        """The keycode of an X keysym name ("w", "space", "Shift_L")."""
        code = self._d.keysym_to_keycode(self._XK.string_to_keysym(keysym_name))
        if code == 0:
            raise ValueError(f"no keycode for keysym {keysym_name!r}")
        return code

    def key(self, code: int, down: bool) -> None:
        self._xtest.fake_input(self._d, self._X.KeyPress if down else self._X.KeyRelease, code)

    def button(self, number: int, down: bool) -> None:
        """Mouse button 1 (left), 2 (middle) or 3 (right)."""
        self._xtest.fake_input(self._d, self._X.ButtonPress if down else self._X.ButtonRelease, number)

    def move_mouse(self, x: int, y: int) -> None:
        """Put the pointer at screen pixel (x, y)."""
        self._xtest.fake_input(self._d, self._X.MotionNotify, x=int(x), y=int(y))

    def flush(self) -> None:
        self._d.sync()

    def focus_window(self) -> bool:
        """Give input focus to the first mapped top-level window (the game's); False if there is none yet."""
        for child in self._root.query_tree().children:
            if child.get_attributes().map_state == self._X.IsViewable:
                child.set_input_focus(self._X.RevertToParent, self._X.CurrentTime)
                self._d.sync()
                return True
        return False

    def grab(self) -> np.ndarray:
        """The whole screen, ``(H, W, 3)`` uint8 RGB."""
        image = self._root.get_image(0, 0, self.width, self.height, self._X.ZPixmap, 0xFFFFFFFF)
        bgrx = np.frombuffer(image.data, np.uint8).reshape(self.height, self.width, 4)
        return bgrx[:, :, 2::-1].copy()

    def close(self) -> None:
        try:
            self._d.close()
        except Exception:  # the server may already be gone; nothing is left to release then
            pass
