--- User commands; nothing starts until `require('livekv').setup()` is called.
vim.api.nvim_create_user_command('LivekvToggle', function()
  require('livekv').toggle()
end, { desc = 'livekv: turn automatic suggestions on or off' })
vim.api.nvim_create_user_command('LivekvStatus', function()
  print(require('livekv').statusline())
end, { desc = 'livekv: print the status line component' })
