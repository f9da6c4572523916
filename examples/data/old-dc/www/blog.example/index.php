<?php echo "<title>Blog</title>";
