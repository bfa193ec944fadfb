"""NanoDet-g (COCO) as a training-time teacher and an evaluation-time judge.

Training and evaluation side only: nothing under ``runtime``, ``ros`` or the node imports this
package. Modules, lowest first:

* :mod:`.tfjs` reads TF.js graph models (topology, manifest, fp16/uint8 weights) with NumPy;
* :mod:`.graph_numpy` interprets the graph op by op (the reference the conversion is tested on);
* :mod:`.torch_graph` and :mod:`.model` map it to a torch module (needs torch);
* :mod:`.export` writes the ONNX file (needs torch); :mod:`.runner` runs it with ONNX Runtime;
* :mod:`.nanodet` holds the model's facts and its decoder; :mod:`.images` the images it scores;
* :mod:`.labels` writes and loads teacher label files; :mod:`.judge` scores images for evaluation;
* :mod:`.assets` knows where the files are and re-creates them (``teacher fetch``).

Attribution and licences: third_party/nanodet_g/README.md and docs/TEACHER.md.
"""
