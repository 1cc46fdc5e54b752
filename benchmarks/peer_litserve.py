"""Peer: LitServe serving the ONNX file through ONNX Runtime, its defaults otherwise.

    <peers venv>/bin/python benchmarks/peer_litserve.py MODEL.onnx --port PORT

POST /predict {"images": [[[[...]]]]} (one NHWC batch as nested lists) -> {"logits": [...]}.
Runs under the peers' venv, so it imports nothing of this project; one worker, bound to
127.0.0.1; ONNX Runtime on one thread.
"""

import argparse

import litserve as ls
import numpy as np
import onnxruntime as ort


class OnnxAPI(ls.LitAPI):
    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model

    def setup(self, device):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def decode_request(self, request):
        return np.asarray(request["images"], dtype=np.float32)

    def predict(self, images):
        return self.session.run(None, {self.input: images})[0]

    def encode_response(self, logits):
        return {"logits": logits.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--port", type=int, required=True, help="HTTP port")
    args = parser.parse_args()
    server = ls.LitServer(OnnxAPI(args.model), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
