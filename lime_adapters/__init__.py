"""lime adapters: explain prompt words (``text``) with stock ``LimeTextExplainer``."""
from lime_adapters.text import MASK_STRING, WordClassifierFn, explain_prompt, word_explainer, word_weights

__all__ = ["MASK_STRING", "WordClassifierFn", "explain_prompt", "word_explainer", "word_weights"]
