"""`pinfeatures assess`: stratified estimates, intervals and MDE from labeled samples."""
