#pragma once
// A model's config and weights as bytes and back: osd's wire format for weights in messages
// that cross processes (a pickled list [config JSON, parameters...]), not a checkpoint format.
#include <memory>
#include <vector>

namespace osd {

class Transformer;
std::vector<char> model_to_bytes(const Transformer& model);
std::shared_ptr<const Transformer> model_from_bytes(const std::vector<char>& bytes);  // throws osd::Error

}  // namespace osd
