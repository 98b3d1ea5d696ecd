"""The LDM bundle (docs/models.md).

Public API (import from the submodules; nothing heavy is imported here):
`loading.load_pipeline`, `loading.inspect_model_folder`, `bundle.build_bundle`, `tokenizer.train_tokenizer`,
`tiny.build_tiny_pipeline`, `text_pretraining.pretrain_text_encoder`, `vae_training.train_vae`.
"""
