package store

const noFollow = 0
