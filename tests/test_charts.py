import numpy as np

from ui import charts


def test_maps_are_coloured_as_rgb_images():
    rgb = charts.colorize(np.array([[0.0, 1.0], [0.5, 2.0]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 3]  # inferno starts black
    assert rgb[0, 1].min() > 150 and rgb[0, 1][0] > 240  # ...and ends pale yellow
    assert np.array_equal(rgb[1, 1], rgb[0, 1])  # values past 1 are clipped
    signed = charts.colorize(np.array([[-1.0, 0.0, 1.0]]), signed=True)
    assert signed[0, 0, 2] > signed[0, 0, 0] and signed[0, 2, 0] > signed[0, 2, 2]  # blue below, red above
    assert signed[0, 1].min() > 230  # zero is near white


def test_overlay_keeps_the_image_where_the_map_is_cold():
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    values = np.zeros((4, 4))
    values[0, 0] = 1.0
    blended = charts.overlay(image, values, "t").data[0].z
    assert np.array_equal(np.asarray(blended)[1:, 1:], image[1:, 1:])
    assert not np.array_equal(np.asarray(blended)[0, 0], image[0, 0])
