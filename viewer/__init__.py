"""``vexplain serve``: a local web viewer over one model (the ``serve`` extra: Starlette, uvicorn,
python-multipart). The page (plain HTML/JS/CSS from this package's ``static`` folder, nothing
fetched from elsewhere) uploads an image and calls the JSON API below once per chosen method.

The server binds 127.0.0.1 unless told otherwise, answers only the loopback host names when bound
there, refuses POSTs from other origins, and sends a Content-Security-Policy that lets the page
load nothing but its own files (and data:/blob: images). Static files are looked up by exact name
in a table read from the package at start-up: no request path ever reaches the file system.
Explanations run one at a time (methods hook into the one shared model).

JSON API
--------
Every error is ``{"error": "<one line>"}`` (plus ``"type"``, the vexplain error's class, when one
was raised) with a 4xx status (400 bad input, 404 unknown path,
405 wrong verb, 413 upload too large), or 500 for an internal error, never a traceback.

``GET /api/model``
    ``{name, description, backend, input_size: [h, w] | null, mean, std, class_names | null,
    max_upload_bytes, max_pixels}``.

``GET /api/methods``
    One object per registered method (plugins included), sorted by name: ``{name, summary, paper,
    plugin, requires, backends, works, missing, default, options}``. ``works``: whether it runs on
    the loaded model (``missing``: the capabilities it lacks); ``default``: it is ``vx.explain``'s
    default method; ``options``: ``{option: {default: <JSON value>, text: <Python literal>}}``.

``GET /api/colormaps``
    ``{name: ["#rrggbb" x 256]}``: each OpenCV colormap, indexed by round(255 * min-max value).

``POST /api/explain``
    A ``multipart/form-data`` body with the fields:

    - ``image`` (required): the image file (PNG, JPEG, BMP, TIFF, WebP), at most
      ``max_upload_bytes`` and ``max_pixels``; resized to the model's ``input_size`` when known;
    - ``method`` (required): a method name from ``/api/methods``;
    - ``target``: a class index or a class name (default: the top class);
    - ``overlay_colormap`` (default ``jet``) and ``overlay_alpha`` (default 0.5): the overlay PNG's;
    - any other field is a method option, its value parsed like the CLI's ``--option k=v``
      (a Python literal, else the text): ``window=8``, ``stride=(4, 4)``, ``base=saliency``.

    Answer: ``{method, image, shape: [h, w], dtype: "float32", map_npy, min, max, overlay_png,
    image_png, colormap, alpha, target, class_name, score, timings, options, warnings}``.
    ``map_npy`` is the raw map (``Explanation.maps[0]``, no normalisation) as base64 of the bytes
    of a NumPy ``.npy`` file (little-endian float32, C order): ``np.load(io.BytesIO(b64decode(s)))``.
    ``min``/``max`` are its finite extremes (null when none); ``overlay_png`` is base64 PNG of the
    min-max coloured map blended over the image as the model saw it (``image_png``, also base64
    PNG); ``score`` is the model's output for ``target``; ``timings`` are ``Explanation.timings`` in
    seconds plus ``request`` (the whole request); ``options`` every option used (defaults filled
    in); ``warnings`` the lines of ``Explanation.warnings``.
"""
