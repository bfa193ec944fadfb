"""Networks (torch): fusion net, task network (shared backbone + segmentation and detection heads),
discriminator, and the deployed three-output graph."""
