// placeholder, replaced below
print("tokenizer-bench")
